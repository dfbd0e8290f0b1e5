"""The dark-object retrieval in TensorFlow equals the NumPy reference, and as the physics
generator's prior it corrects a scene under an atmosphere training never showed, untrained."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf

from s2ac.model.physics_generator import build_physics_generator
from s2ac.model.retrieval import DarkObjectAot
from s2ac.physics.lut import Lut
from s2ac.physics.retrieval import dark_object_aot
from s2ac.physics.tf_lut import geometry_vector


@pytest.mark.parametrize("changes", [
    {"solar_zenith": 15.0, "elevation_km": 0.0},
    {"solar_zenith": 70.0, "elevation_km": 2.0, "view_zenith": 11.0, "satellite": "S2B"},
    {"relative_azimuth": 350.0, "ozone": 0.45},
])  # fmt: skip
def test_tensorflow_retrieval_equals_numpy(changes: dict, dark_scenes):
    lut = Lut.load()
    rng = np.random.default_rng(3)
    truths = [dark_scenes.atmosphere(a, m, **changes) for a, m in ((0.0, "desert"), (0.4, "urban"),
                                                       (1.2, "maritime"))]  # fmt: skip
    toa = np.stack([lut.forward(dark_scenes.scene(rng, dark=0.02), t) for t in truths]).astype("f4")
    expected = np.stack(
        [dark_object_aot(image, t, lut) for image, t in zip(toa, truths, strict=True)]
    )
    geometry = tf.constant([geometry_vector(t) for t in truths], tf.float32)
    found = DarkObjectAot()([tf.constant(toa), geometry]).numpy()
    np.testing.assert_allclose(found, expected, atol=2e-4)


def test_untrained_with_the_dark_object_prior_corrects_an_unseen_atmosphere(tmp_path, dark_scenes):
    """Maritime air at AOT 0.8 over high ground at a low sun (none of it in the training
    distribution): the untrained generator finds model and load from the dark pixels and gets
    the surface back, where the climatology prior is far off. It saves and loads."""
    lut = Lut.load()
    truth = dark_scenes.atmosphere(0.8, "maritime", solar_zenith=62.0, elevation_km=1.4)
    surface = dark_scenes.scene(np.random.default_rng(5)).astype("f4")[None]
    inputs = {"toa": lut.forward(surface, truth)[None][0],
              "geometry": np.array([geometry_vector(truth)], "f4")}  # fmt: skip
    prior = build_physics_generator(
        dark_scenes.size, 8, prior="dark_object", adjacency=False, seed=0
    )
    fixed = build_physics_generator(
        dark_scenes.size, 8, prior="climatology", adjacency=False, seed=0
    )
    rmse = {name: float(np.sqrt(np.mean((model(inputs).numpy() - surface) ** 2)))
            for name, model in (("prior", prior), ("fixed", fixed))}  # fmt: skip
    # (0.008, not ~0: the softmin over the models' spreads still mixes in the others a little;
    # training sharpens it. The climatology: 0.044.)
    assert rmse["prior"] < 0.01 and rmse["fixed"] > 4 * rmse["prior"], rmse
    prior.save(tmp_path / "g.keras")
    again = keras.models.load_model(tmp_path / "g.keras")
    np.testing.assert_allclose(again(inputs).numpy(), prior(inputs).numpy(), atol=1e-6)
