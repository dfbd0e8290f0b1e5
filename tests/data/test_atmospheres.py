"""Atmosphere draws and the random fields that vary them over a patch."""

from __future__ import annotations

import numpy as np
import pytest

from s2ac.config import AtmosphereConfig, DataConfig
from s2ac.data.atmospheres import gaussian_field, sample_atmosphere, sample_field
from s2ac.physics.lut import Lut


def test_gaussian_field_has_unit_variance_and_the_stated_correlation_length():
    """corr(d) = exp(-d^2 / L^2): at d = L it is 1/e, at 2 L about 0.02."""
    rng = np.random.default_rng(0)
    samples = np.stack([gaussian_field(rng, 24, 0.32, 2.0) for _ in range(300)])
    assert samples.var() == pytest.approx(1.0, rel=0.1)
    assert abs(samples.mean()) < 0.1
    lag = round(2.0 / 0.32)  # ~6 nodes = 1.92 km
    corr = np.mean(samples[:, :, :-lag] * samples[:, :, lag:]) / samples.var()
    expected = np.exp(-((lag * 0.32) ** 2) / 2.0**2)
    assert corr == pytest.approx(expected, abs=0.06)
    corr_far = np.mean(samples[:, :, : -2 * lag] * samples[:, :, 2 * lag :]) / samples.var()
    assert abs(corr_far) < 0.08


def test_fields_vary_around_the_patch_mean_inside_the_table():
    lut, rng = Lut.load(), np.random.default_rng(1)
    config = DataConfig()
    options = AtmosphereConfig(aot_log_sigma=0.5, aot_correlation_km=1.0)
    spreads = []
    for _ in range(40):
        base = sample_atmosphere(rng, config)
        field = sample_field(rng, base, 256, options, lut)
        assert field.aot550.shape == (9, 9) and field.step == 32
        assert field.aot550.min() >= 0 and field.aot550.max() <= 1.2
        assert field.water_vapour.min() >= 0.2 and field.water_vapour.max() <= 6.0
        assert field.elevation_km.min() >= 0 and field.elevation_km.max() <= 2.0
        spreads.append(field.aot550.max() / max(field.aot550.min(), 1e-3))
        lut.coefficients(field.at(4, 4))  # every node is inside the table
    assert np.median(spreads) > 1.5  # AOT really varies across a patch at L = 1 km


def test_uniform_fields_when_the_variation_is_off():
    lut, rng = Lut.load(), np.random.default_rng(2)
    options = AtmosphereConfig(aot_log_sigma=0, water_vapour_log_sigma=0, elevation_std_km=0)
    base = sample_atmosphere(rng, DataConfig())
    field = sample_field(rng, base, 64, options, lut)
    assert np.all(field.aot550 == base.aot550) and np.all(field.elevation_km == base.elevation_km)


def test_training_draws_follow_the_configured_models_and_sun():
    rng = np.random.default_rng(3)
    config = DataConfig(
        atmosphere=AtmosphereConfig(aerosol_models={"maritime": 1.0}, solar_zenith=(60, 70)),
        max_aot550=1.2,
    )
    draws = [sample_atmosphere(rng, config) for _ in range(100)]
    assert {d.aerosol_model for d in draws} == {"maritime"}
    assert all(60 <= d.solar_zenith <= 70 for d in draws)
    with pytest.raises(ValueError, match="aerosol_models"):
        AtmosphereConfig(aerosol_models={"volcanic": 1.0})
    with pytest.raises(ValueError, match="0-70"):
        AtmosphereConfig(solar_zenith=(10, 80))
