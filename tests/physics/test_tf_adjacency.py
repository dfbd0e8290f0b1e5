"""The TensorFlow environment and adjacency inverse equal the NumPy ones, and are differentiable."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from s2ac.bands import PIXEL_KM
from s2ac.physics import forward
from s2ac.physics.adjacency import environment
from s2ac.physics.lut import Atmosphere, Lut
from s2ac.physics.tf_adjacency import TFEnvironment
from s2ac.physics.tf_lut import TFLut

LUT = Lut.load()


@pytest.mark.parametrize("height, width", [(256, 256), (37, 64)])
def test_environment_equals_numpy(height: int, width: int):
    """Also when the 2 km PSF is wider than the image (mirrored more than once)."""
    surface = np.random.default_rng(0).uniform(0.0, 0.6, (2, height, width, 4)).astype("f4")
    rayleigh, aerosol = TFEnvironment(height, width, PIXEL_KM)(tf.constant(surface))
    for k in range(2):
        expected = environment(surface[k], PIXEL_KM)
        np.testing.assert_allclose(rayleigh[k].numpy(), expected[0], atol=1e-6, rtol=0)
        np.testing.assert_allclose(aerosol[k].numpy(), expected[1], atol=1e-6, rtol=0)


def _fields(size: int) -> np.ndarray:
    """Fields and a dark lake with sharp shores: the adjacency effect's hard case."""
    rng = np.random.default_rng(4)
    y, x = np.mgrid[:size, :size] / size
    surface = 0.2 + 0.1 * np.sin(9 * x)[..., None] * np.array([0.3, 0.5, 0.7, 1.0])
    surface = surface + rng.normal(0, 0.02, (size, size, 4))
    surface[(x - 0.4) ** 2 + (y - 0.6) ** 2 < 0.05] = [0.03, 0.03, 0.02, 0.01]
    return surface[None].astype("f4")


def test_coarse_environment_is_close_to_the_exact_one():
    """Block means of 40 m: the kilometre-wide PSFs barely see them (what the generator uses)."""
    surface = tf.constant(_fields(128))
    exact = TFEnvironment(128, 128, PIXEL_KM)(surface)
    coarse = TFEnvironment(128, 128, PIXEL_KM, factor=4)(surface)
    for e, c in zip(exact, coarse, strict=True):
        error = np.abs(c.numpy() - e.numpy())
        signal = np.abs(e.numpy() - surface.numpy())  # what the adjacency inverse corrects
        assert error.max() < 0.005 and np.sqrt((error**2).mean()) < 0.015 * signal.mean()
    uniform = tf.fill((1, 64, 64, 4), 0.3)
    for c in TFEnvironment(64, 64, PIXEL_KM, factor=4)(uniform):
        np.testing.assert_allclose(c.numpy(), 0.3, atol=1e-6)


def test_coarse_factor_must_divide_the_size():
    with pytest.raises(ValueError, match="divide"):
        TFEnvironment(30, 30, PIXEL_KM, factor=4)


def test_environment_refuses_another_size():
    with pytest.raises(ValueError, match="built for 32x32"):
        TFEnvironment(32, 32, PIXEL_KM)(tf.zeros((1, 16, 16, 4)))


@pytest.mark.parametrize(
    "aot, model, sza, elevation",
    [(0.0, "continental", 0.0, 0.0), (0.45, "urban", 37.0, 0.7), (1.2, "desert", 70.0, 2.0),
     (0.8, "maritime", 55.0, 1.1)],
)  # fmt: skip
def test_adjacent_inverse_equals_numpy(aot: float, model: str, sza: float, elevation: float):
    """Under a uniform atmosphere, from the true surroundings: the NumPy forward model's exact
    inverse (1e-5), over the table's domain."""
    atmosphere = Atmosphere(aot550=aot, aerosol_model=model, water_vapour=2.0, ozone=0.3,
                            solar_zenith=sza, view_zenith=6.0, relative_azimuth=100.0,
                            elevation_km=elevation)  # fmt: skip
    size = 48
    surface = np.random.default_rng(1).uniform(0.02, 0.5, (size, size, 4))
    field = forward.FieldAtmosphere.uniform(atmosphere, size, 16)
    env = environment(surface, PIXEL_KM)
    toa = forward.forward(LUT, surface, field, env)
    t = TFLut(LUT)
    ones = np.ones((1, size, size))
    weights = np.zeros((1, size, size, 4))
    weights[..., LUT.aerosol_models.index(model)] = 1.0
    c = t.coefficients(ones * aot, ones * 2.0, weights, t.geometry([atmosphere]))
    surroundings = tuple(tf.constant(e[None]) for e in env)
    got = t.invert_adjacent(toa[None], c, surroundings).numpy()[0]
    np.testing.assert_allclose(got, surface, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got, forward.invert(LUT, toa, field, env), atol=1e-5, rtol=0)


def test_adjacent_inverse_gradients_are_finite_at_the_domain_edges():
    t = TFLut(LUT)
    size = 32
    toa = tf.constant(np.random.default_rng(2).uniform(0.02, 0.6, (4, size, size, 4)), tf.float32)
    corners = [[0, 0, 0, 0, 0.25, 0], [70, 12, 360, 2, 0.45, 1], [30, 5, 90, 0.5, 0.3, 0],
               [70, 0, 180, 2, 0.25, 1]]  # fmt: skip
    geometry = tf.constant(corners, tf.float32)
    env = TFEnvironment(size, size, PIXEL_KM)
    for aot, wv in [(0.0, 0.2), (1.2, 6.0), (0.5, 2.0)]:
        a = tf.Variable(tf.fill((4, size, size), aot))
        w = tf.Variable(tf.fill((4, size, size), wv))
        mix = tf.Variable(tf.fill((4, size, size, 4), 0.25))
        with tf.GradientTape() as tape:
            c = t.coefficients(a, w, mix, geometry)
            lambertian = t.invert(toa, c)
            sr = t.invert_adjacent(toa, c, env(tf.clip_by_value(lambertian, 0.0, 1.5)))
            loss = tf.reduce_mean(tf.abs(sr - 0.2))
        grads = tape.gradient(loss, [a, w, mix])
        assert all(np.isfinite(g.numpy()).all() for g in grads)
        assert np.abs(grads[0].numpy()).max() > 0
