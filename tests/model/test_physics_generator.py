"""The physics-informed generator: untrained it is the 6s baseline; it trains; its atmosphere
stays inside the look-up table."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from s2ac.model.physics_generator import build_physics_generator
from s2ac.physics.corrections import CLIMATOLOGY, sixs_climatology
from s2ac.physics.lut import Atmosphere, Lut
from s2ac.physics.tf_lut import TFLut

SIZE = 32


def _geometry(atmosphere: Atmosphere, n: int) -> np.ndarray:
    return np.repeat(TFLut().geometry([atmosphere]).numpy(), n, axis=0)


def test_untrained_with_the_climatology_head_is_the_6s_baseline():
    """A head fixed to the climatology (aerosol model certain), without the adjacency step, is
    the ``6s`` baseline exactly; with it, a uniform scene (environment = scene) still is."""
    toa = np.random.default_rng(0).uniform(0.02, 0.6, (2, SIZE, SIZE, 4)).astype("f4")
    inputs = {"toa": toa, "geometry": _geometry(CLIMATOLOGY, 2)}
    expected = np.stack([sixs_climatology(image) for image in toa])
    model = build_physics_generator(SIZE, 8, adjacency=False, model_logit=40.0, seed=0)
    np.testing.assert_allclose(model(inputs, training=False).numpy(), expected, atol=1e-5, rtol=0)
    adjacent = build_physics_generator(SIZE, 8, adjacency=True, model_logit=40.0, seed=0)
    uniform = {"toa": np.broadcast_to(toa[:, :1, :1], toa.shape).copy(),
               "geometry": inputs["geometry"]}  # fmt: skip
    flat = np.stack([sixs_climatology(image) for image in uniform["toa"]])
    np.testing.assert_allclose(adjacent(uniform).numpy(), flat, atol=2e-5, rtol=0)
    # a contrasted scene: the adjacency step moves pixels away from their surroundings
    assert np.abs(adjacent(inputs).numpy() - expected).max() > 1e-3


@pytest.mark.slow
def test_a_short_training_run_lowers_l1_towards_the_true_atmosphere(tmp_path):
    """Lambertian surfaces under a hazier atmosphere than the climatology: a few steps of L1 on the
    physics generator move it towards the truth, and it saves and loads."""
    lut = Lut.load()
    rng = np.random.default_rng(1)
    truth = Atmosphere(aot550=0.9, aerosol_model="continental", water_vapour=1.0, ozone=0.285,
                       solar_zenith=37.5, view_zenith=5.5, relative_azimuth=90.0,
                       elevation_km=0.5)  # fmt: skip
    surface = rng.uniform(0.03, 0.4, (8, SIZE, SIZE, 4)).astype("f4")
    toa = np.stack([lut.forward(s, truth) for s in surface])
    geometry = _geometry(truth, len(toa))
    model = build_physics_generator(SIZE, 8, residual=False, adjacency=False, seed=0)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mae")
    before = model.evaluate({"toa": toa, "geometry": geometry}, surface, verbose=0)
    model.fit({"toa": toa, "geometry": geometry}, surface, epochs=15, batch_size=4, verbose=0)
    after = model.evaluate({"toa": toa, "geometry": geometry}, surface, verbose=0)
    assert after < 0.5 * before, (before, after)
    path = tmp_path / "physics.keras"
    model.save(path)
    again = keras.models.load_model(path)
    inputs = {"toa": toa[:2], "geometry": geometry[:2]}
    np.testing.assert_allclose(again(inputs).numpy(), model(inputs).numpy(), atol=1e-6)
    aot = keras.Model(model.inputs, model.get_layer("aot550").output)(inputs).numpy()
    assert np.all((aot >= 0) & (aot <= 1.2)) and tf.reduce_mean(aot) > CLIMATOLOGY.aot550


@pytest.mark.slow
def test_pix2pix_trains_the_physics_generator_on_geometry_batches():
    """The GAN's train_step takes ({"toa", "geometry"}, sr) batches: a short run lowers the
    validation L1 (the discriminator judges the (toa, sr) pair as for the U-Net)."""
    from s2ac.model.discriminator import build_discriminator
    from s2ac.model.pix2pix import Pix2Pix, default_optimizer

    lut = Lut.load()
    rng = np.random.default_rng(2)
    truth = Atmosphere(aot550=0.8, aerosol_model="urban", water_vapour=1.5, ozone=0.3,
                       solar_zenith=30.0, view_zenith=4.0, relative_azimuth=120.0,
                       elevation_km=0.2)  # fmt: skip
    surface = rng.uniform(0.03, 0.4, (12, SIZE, SIZE, 4)).astype("f4")
    toa = np.stack([lut.forward(s, truth) for s in surface])
    data = ({"toa": toa, "geometry": _geometry(truth, len(toa))}, surface)
    model = Pix2Pix(build_physics_generator(SIZE, 8, adjacency=False, seed=0),
                    build_discriminator(SIZE, 8, seed=1))  # fmt: skip
    model.compile(default_optimizer(2e-3), default_optimizer(2e-4), lambda_l1=100.0)
    before = model.evaluate(*data, batch_size=4, verbose=0, return_dict=True)["gen_l1"]
    model.fit(*data, epochs=10, batch_size=4, verbose=0)
    after = model.evaluate(*data, batch_size=4, verbose=0, return_dict=True)["gen_l1"]
    assert after < 0.7 * before, (before, after)
