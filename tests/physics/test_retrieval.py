"""The dark-object AOT retrieval finds the aerosol load that makes the darkest pixels dark."""

from __future__ import annotations

import numpy as np
import pytest

from s2ac.physics.lut import Lut
from s2ac.physics.retrieval import crossing, dark_object_aot, dark_quantiles, spread


@pytest.mark.parametrize(("aot", "model"), [(0.15, "continental"), (0.9, "continental"),
                                            (0.6, "maritime"), (1.1, "urban")])  # fmt: skip
def test_the_aot_of_a_known_atmosphere_is_found_in_every_band(aot: float, model: str, dark_scenes):
    lut = Lut.load()
    truth = dark_scenes.atmosphere(aot, model, solar_zenith=65.0, elevation_km=1.5)
    toa = lut.forward(dark_scenes.scene(np.random.default_rng(0)), truth)
    found = dark_object_aot(toa, truth, lut)
    right = found[lut.aerosol_models.index(model)]
    np.testing.assert_allclose(right, aot, atol=0.01)
    # the model whose spectral shape made the haze agrees with itself best across the bands
    # (a model that finds no AOT in some band is out, though its "spread" there is 0)
    spreads = spread(found, lut.axes["aot550"].nodes[-1])
    assert spreads.argmin() == lut.aerosol_models.index(model), spreads


def test_darker_ground_than_assumed_reads_as_less_haze(dark_scenes):
    lut = Lut.load()
    truth = dark_scenes.atmosphere(0.5)
    toa = lut.forward(dark_scenes.scene(np.random.default_rng(1), dark=0.002), truth)
    found = dark_object_aot(toa, truth, lut)[lut.aerosol_models.index("continental")]
    assert np.all(found < 0.5) and np.all(found > 0.2), found


def test_crossing_interpolates_and_keeps_to_the_grid():
    grid = np.array([0.0, 0.5, 1.0])
    values = np.array([[0.3, 0.1, -0.1], [0.3, 0.2, 0.15], [-0.05, -0.1, -0.3]])
    np.testing.assert_allclose(crossing(values, grid, 0.0), [0.75, 1.0, 0.0])


def test_dark_quantiles_take_each_bands_own_dark_end():
    image = np.zeros((10, 10, 4))
    image[..., 0] = np.arange(100).reshape(10, 10) / 100
    image[..., 1] = 0.5
    np.testing.assert_allclose(dark_quantiles(image, 0.05), [0.05, 0.5, 0.0, 0.0])
