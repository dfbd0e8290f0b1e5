"""The adjacency effect and the field forward model against direct 6S runs.

6S references: a disc target in a uniform environment (``HeterogeneousLambertian``) for the
adjacency model; homogeneous runs at the control nodes of a varying field for AOT550, water vapour
and elevation varying over a patch. Tests marked slow run 6S (~40 band runs).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from s2ac.bands import BAND_NAMES
from s2ac.physics import adjacency, sixs
from s2ac.physics.forward import FieldAtmosphere, forward, upsample
from s2ac.physics.lut import Atmosphere, Lut

TOLERANCE = 0.0025  # table accuracy (0.002) plus the interpolated adjacency transmittances


@pytest.fixture(scope="module")
def lut() -> Lut:
    return Lut.load()


def conditions(a: Atmosphere) -> sixs.Conditions:
    return sixs.Conditions(a.aot550, a.aerosol_model, a.water_vapour, a.ozone, a.solar_zenith,
                           a.view_zenith, a.relative_azimuth, a.elevation_km)  # fmt: skip


def disc_toa(lut: Lut, a: Atmosphere, radius_km: float, target: float, env: float) -> np.ndarray:
    """The model's TOA at the centre of a disc, with 6S's environment functions in closed form."""
    c = lut.coefficients(a) | lut.adjacency_coefficients(a)
    share = [adjacency.environment_share(radius_km, k) for k in adjacency.all_environments()]
    env_r, env_a = (s * target + (1 - s) * env for s in share)
    rho_e = adjacency.mix(env_r, env_a, c["diffuse_rayleigh_up"], c["diffuse_aerosol_up"])
    diffuse = c["t_up"] - c["direct_up"]
    term = (c["direct_up"] * target + diffuse * rho_e) / (1 - c["spherical_albedo"] * rho_e)
    return c["path_reflectance"] + c["gas_transmittance"] * c["t_down"] * term


ATMOSPHERES = [
    Atmosphere(0.45, "continental", 2.2, 0.30, 33.0, 9.0, 70.0, 0.3, "S2A"),
    Atmosphere(1.05, "urban", 4.0, 0.28, 62.0, 4.0, 140.0, 1.4, "S2B"),
    Atmosphere(0.7, "maritime", 1.0, 0.40, 20.0, 11.0, 20.0, 0.0, "S2A"),
]


@pytest.mark.slow
@pytest.mark.parametrize("atmosphere", ATMOSPHERES, ids=lambda a: a.aerosol_model)
def test_disc_target_matches_6s_heterogeneous_lambertian(lut: Lut, atmosphere: Atmosphere):
    """Dark field in bright desert and the reverse, at radii from a pixel to 5 km."""
    cases = [(0.0001, 0.05, 0.35), (0.3, 0.05, 0.35), (1.5, 0.4, 0.03), (5.0, 0.3, 0.1)]
    for radius, target, env in cases:
        model = disc_toa(lut, atmosphere, radius, target, env)
        for k, band in enumerate(BAND_NAMES):
            reference = sixs.apparent_reflectance_disc(
                conditions(atmosphere), band, atmosphere.satellite, radius, target, env
            )
            assert model[k] == pytest.approx(reference, abs=TOLERANCE), (radius, band)
    # the effect is real: at 0.3 km, dark target in a bright surround is far from uniform
    uniform = lut.forward(np.full(4, 0.05), atmosphere)
    assert np.max(disc_toa(lut, atmosphere, 0.3, 0.05, 0.35) - uniform) > 0.01


@pytest.mark.parametrize("coefficients", adjacency.all_environments())
def test_psf_kernel_holds_the_environment_function(coefficients):
    kernel = adjacency.psf_kernel(coefficients, pixel_km=0.01)
    half = kernel.shape[0] // 2
    y, x = np.mgrid[-half : half + 1, -half : half + 1]
    r = np.hypot(x, y) * 0.01
    assert kernel.sum() == pytest.approx(adjacency.environment_share(2.0, coefficients), rel=1e-9)
    for radius in (0.1, 0.5, 1.5):
        inside = kernel[r <= radius].sum()
        assert inside == pytest.approx(adjacency.environment_share(radius, coefficients), abs=0.01)


def test_environment_of_a_uniform_scene_is_the_scene_and_of_an_edge_is_smooth():
    scene = np.full((300, 300, 4), 0.2, np.float32)
    for env in adjacency.environment(scene, 0.01):
        np.testing.assert_allclose(env, 0.2, atol=1e-5)
    scene[:, 150:] = 0.0  # bright | dark
    _, env_a = adjacency.environment(scene, 0.01)
    row = env_a[150, :, 0]
    assert 0.0 < row[-1] < row[160] < row[140] < row[0] <= 0.2
    assert abs(row[149] - row[150]) < 0.02  # no step at the edge: the aerosol PSF blurs it


def test_forward_without_adjacency_and_uniform_field_is_the_table_forward(lut: Lut):
    rng = np.random.default_rng(0)
    surface = rng.uniform(0, 0.6, (64, 64, 4))
    a = ATMOSPHERES[0]
    field = FieldAtmosphere.uniform(a, 64, 16)
    np.testing.assert_allclose(forward(lut, surface, field), lut.forward(surface, a), atol=1e-6)
    # with adjacency, a uniform surround equal to the pixel is the uniform case again
    same = (surface, surface)
    np.testing.assert_allclose(forward(lut, surface, field, same), lut.forward(surface, a),
                               atol=1e-6)  # fmt: skip


def test_upsample_is_exact_at_nodes_and_linear_between():
    nodes = np.arange(12, dtype=float).reshape(3, 4)
    pixels = upsample(nodes, step=8, height=17, width=25)
    np.testing.assert_allclose(pixels[::8, ::8], nodes)
    assert pixels[4, 0] == pytest.approx((nodes[0, 0] + nodes[1, 0]) / 2)
    with pytest.raises(ValueError, match="do not cover"):
        upsample(nodes, step=8, height=18, width=25)


@pytest.mark.slow
def test_varying_field_matches_6s_at_its_control_nodes(lut: Lut):
    """AOT550, water vapour and elevation varying over a patch: each control node is 6S's
    homogeneous answer for that node's atmosphere; between nodes the coefficients are bilinear."""
    base = Atmosphere(0.4, "desert", 2.0, 0.3, 69.0, 6.0, 100.0, 0.5, "S2B")  # sun low
    field = FieldAtmosphere(
        base,
        aot550=np.array([[0.1, 0.4], [0.8, 1.2]]),
        water_vapour=np.array([[0.5, 2.0], [3.5, 6.0]]),
        elevation_km=np.array([[0.0, 0.6], [1.2, 2.0]]),
        step=31,
    )
    surface = np.full((32, 32, 4), 0.05)  # dark ground: the path reflectance dominates
    toa = forward(lut, surface, field)
    for i, j in ((0, 0), (0, 1), (1, 0), (1, 1)):
        node = field.at(i, j)
        for k, band in enumerate(BAND_NAMES):
            reference = sixs.apparent_reflectance(conditions(node), band, node.satellite, 0.05)
            assert toa[31 * i, 31 * j, k] == pytest.approx(reference, abs=0.002), (i, j, band)
    # AOT from 0.1 to 1.2 across the patch changes the blue TOA by far more than the tolerance
    assert abs(toa[31, 31, 0] - toa[0, 0, 0]) > 0.05
    middle = 0.5 * (toa[0, 0] + toa[0, 31])
    assert np.all(np.abs(toa[0, 15] - middle) < 0.01)


def test_adjacency_coefficients_are_consistent(lut: Lut):
    for a in ATMOSPHERES:
        c = lut.coefficients(a) | lut.adjacency_coefficients(a)
        mu = math.cos(math.radians(a.view_zenith))
        assert np.all(c["direct_up"] < c["t_up"])
        assert np.all(c["direct_up"] > math.exp(-3 / mu))
        assert np.all(c["diffuse_rayleigh_up"] > 0) and np.all(c["diffuse_aerosol_up"] > 0)
        # Rayleigh diffuse transmittance falls from blue to NIR (lambda^-4)
        assert c["diffuse_rayleigh_up"][0] > 3 * c["diffuse_rayleigh_up"][3]
