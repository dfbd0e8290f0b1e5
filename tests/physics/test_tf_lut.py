"""The TensorFlow inverse equals the NumPy one over the table's domain, edges included, and its
gradients in the per-pixel atmosphere are finite everywhere there."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import tensorflow as tf

from s2ac.physics.lut import Atmosphere, Lut
from s2ac.physics.tf_lut import TFLut

LUT = Lut.load()
EDGES = {
    "aot550": (0.0, 1.2), "water_vapour": (0.2, 6.0), "ozone": (0.25, 0.45),
    "solar_zenith": (0.0, 70.0), "view_zenith": (0.0, 12.0), "relative_azimuth": (0.0, 360.0),
    "elevation_km": (0.0, 2.0),
}  # fmt: skip


def _atmospheres(n_random: int = 24, seed: int = 0) -> list[Atmosphere]:
    """Random atmospheres inside the table, then corners of it (every model, both satellites)."""
    rng = np.random.default_rng(seed)
    found = [
        Atmosphere(
            **{k: float(rng.uniform(*v)) for k, v in EDGES.items()},
            aerosol_model=str(rng.choice(LUT.aerosol_models)),
            satellite=str(rng.choice(["S2A", "S2B"])),
        )
        for _ in range(n_random)
    ]
    for model, (low, high) in itertools.product(LUT.aerosol_models, [(0, 1), (1, 0)]):
        corner = {k: v[low] if i % 2 else v[high] for i, (k, v) in enumerate(EDGES.items())}
        found.append(Atmosphere(**corner, aerosol_model=model, satellite="S2B" if low else "S2A"))
    return found


def _per_pixel(atmospheres: list[Atmosphere], t: TFLut):
    """One sample per atmosphere, its parameters as (1, 4, 4) maps."""
    ones = np.ones((len(atmospheres), 4, 4))
    aot = ones * np.array([a.aot550 for a in atmospheres])[:, None, None]
    wv = ones * np.array([a.water_vapour for a in atmospheres])[:, None, None]
    index = [LUT.aerosol_models.index(a.aerosol_model) for a in atmospheres]
    weights = np.broadcast_to(np.eye(len(LUT.aerosol_models))[index][:, None, None, :],
                              (*ones.shape, len(LUT.aerosol_models)))  # fmt: skip
    return aot, wv, np.array(weights), t.geometry(atmospheres)


def test_inverse_and_forward_equal_numpy_over_the_domain():
    t = TFLut(LUT)
    atmospheres = _atmospheres()
    toa = np.random.default_rng(1).uniform(0.02, 0.7, (len(atmospheres), 4, 4, 4)).astype("f4")
    aot, wv, weights, geometry = _per_pixel(atmospheres, t)
    surface = t.inverse(toa, aot, wv, weights, geometry).numpy()
    expected = np.stack([LUT.inverse(x, a) for x, a in zip(toa, atmospheres, strict=True)])
    np.testing.assert_allclose(surface, expected, atol=1e-5, rtol=0)
    again = t.forward(surface, aot, wv, weights, geometry).numpy()
    np.testing.assert_allclose(again, toa, atol=1e-5, rtol=0)


def test_repeated_geometries_in_a_batch_equal_each_alone():
    """The geometry contraction runs once per distinct geometry; every sample still gets its own."""
    t = TFLut(LUT)
    atmospheres = _atmospheres()[:3]
    batch = [atmospheres[0], atmospheres[1], atmospheres[0], atmospheres[2], atmospheres[1]]
    toa = np.random.default_rng(3).uniform(0.02, 0.7, (len(batch), 4, 4, 4)).astype("f4")
    together = t.inverse(toa, *_per_pixel(batch, t)).numpy()
    for k, atmosphere in enumerate(batch):
        alone = t.inverse(toa[k : k + 1], *_per_pixel([atmosphere], t)).numpy()[0]
        np.testing.assert_allclose(together[k], alone, atol=1e-6, rtol=0)
    assert np.abs(together[0] - together[1]).max() > 1e-3  # the geometries do differ


def test_atmosphere_varies_per_pixel():
    """Two pixels of one sample under different AOT and water vapour: each matches its own
    NumPy inverse (the per-pixel contraction does not mix pixels)."""
    t = TFLut(LUT)
    base = dict(ozone=0.3, solar_zenith=35.0, view_zenith=4.0, relative_azimuth=100.0,
                elevation_km=0.4, aerosol_model="urban")  # fmt: skip
    low, high = (
        Atmosphere(aot550=0.05, water_vapour=0.5, **base),
        Atmosphere(aot550=1.1, water_vapour=5.0, **base),
    )
    toa = np.full((1, 1, 2, 4), 0.2, dtype="f4")
    weights = np.zeros((1, 1, 2, 4))
    weights[..., LUT.aerosol_models.index("urban")] = 1.0
    out = t.inverse(toa, [[[0.05, 1.1]]], [[[0.5, 5.0]]], weights, t.geometry([low])).numpy()
    np.testing.assert_allclose(out[0, 0, 0], LUT.inverse(toa[0, 0, 0], low), atol=1e-5)
    np.testing.assert_allclose(out[0, 0, 1], LUT.inverse(toa[0, 0, 1], high), atol=1e-5)
    assert np.abs(out[0, 0, 1] - out[0, 0, 0]).min() > 0.05  # the two atmospheres differ


@pytest.mark.parametrize("mixed", [False, True])
def test_gradients_are_finite_everywhere_including_the_edges(mixed):
    t = TFLut(LUT)
    atmospheres = _atmospheres(n_random=8, seed=2)
    aot, wv, weights, geometry = _per_pixel(atmospheres, t)
    if mixed:
        weights = np.full_like(weights, 1.0 / weights.shape[-1])
    aot, wv = tf.Variable(aot, dtype=tf.float32), tf.Variable(wv, dtype=tf.float32)
    weights = tf.Variable(weights, dtype=tf.float32)
    toa = tf.constant(np.random.default_rng(3).uniform(0.02, 0.7, (*aot.shape, 4)), tf.float32)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(t.inverse(toa, aot, wv, weights, geometry))
    gradients = tape.gradient(loss, [aot, wv, weights])
    for name, gradient in zip(("aot550", "water_vapour", "model_weights"), gradients, strict=True):
        assert gradient is not None, name
        assert np.all(np.isfinite(gradient.numpy())), name


def test_gradients_match_finite_differences():
    """Inside the domain the gradient in AOT and water vapour is the slope of the inverse."""
    t = TFLut(LUT, tf.float64)
    atmospheres = _atmospheres(n_random=6, seed=4)[:6]
    aot, wv, weights, geometry = _per_pixel(atmospheres, t)
    aot, wv = np.clip(aot, 0.05, 1.15), np.clip(wv, 0.3, 5.9)
    toa = np.random.default_rng(5).uniform(0.02, 0.7, (*aot.shape, 4))

    def total(a, w):
        return tf.reduce_sum(t.inverse(toa, a, w, weights, geometry), axis=-1)

    a_var, w_var = tf.Variable(aot), tf.Variable(wv)
    with tf.GradientTape(persistent=True) as tape:
        value = total(a_var, w_var)
    d_aot = tape.gradient(value, a_var).numpy()
    eps = 1e-5
    numeric = (total(aot + eps, wv) - total(aot - eps, wv)).numpy() / (2 * eps)
    np.testing.assert_allclose(d_aot, numeric, rtol=1e-4, atol=1e-6)
    d_wv = tape.gradient(value, w_var).numpy()
    nodes = np.asarray(LUT.axes["water_vapour"].nodes)
    off_node = np.min(np.abs(wv[..., None] - nodes), axis=-1) > 1e-3  # piecewise linear in wv
    numeric = (total(aot, wv + eps) - total(aot, wv - eps)).numpy() / (2 * eps)
    np.testing.assert_allclose(d_wv[off_node], numeric[off_node], rtol=1e-4, atol=1e-6)
