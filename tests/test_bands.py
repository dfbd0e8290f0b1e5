import numpy as np
import pytest

from s2ac import bands


def test_band_order_and_names():
    assert bands.BAND_NAMES == ("B2", "B3", "B4", "B8")
    assert [bands.BANDS[name].common_name for name in bands.BAND_NAMES] == [
        "blue",
        "green",
        "red",
        "nir",
    ]
    assert bands.band_index("B08") == 3
    assert bands.band_index(" b3 ") == 1
    with pytest.raises(ValueError, match="unknown band 'B5'"):
        bands.band_index("B5")


@pytest.mark.parametrize(
    ("band", "satellite", "center", "width"),
    [("B2", "S2A", 492.7, 65.0), ("B4", "S2B", 664.9, 31.0), ("B8", "S2A", 832.8, 105.0)],
)
def test_wavelengths_from_esa_srf(band, satellite, center, width):
    assert bands.BANDS[band].center_nm[satellite] == center
    assert bands.BANDS[band].bandwidth_nm[satellite] == width
    # Every centre lies within its nominal band and all are 10 m bands.
    spec = bands.BANDS[band]
    assert abs(spec.center_nm[satellite] - spec.nominal_nm) < spec.bandwidth_nm[satellite] / 2
    assert spec.resolution_m == 10


def test_processing_baseline_offset():
    assert not bands.baseline_has_offset("03.01")
    assert bands.baseline_has_offset("04.00")
    assert bands.baseline_has_offset("05.10")
    assert bands.BASELINE_04_FIRST_DAY.isoformat() == "2022-01-25"
    with pytest.raises(ValueError, match=r"NN\.NN"):
        bands.baseline_has_offset("N0400")


def test_dn_to_reflectance_known_values():
    dn = np.array([0, 1000, 2234, 10000], dtype=np.uint16)
    np.testing.assert_allclose(
        bands.dn_to_reflectance(dn), [0.0, 0.1, 0.2234, 1.0], rtol=0, atol=1e-7
    )
    # Baseline 04.00 adds 1000 DN: 2234 DN is 0.1234 reflectance, unless Earth Engine harmonized it.
    raw = bands.dn_to_reflectance(dn, processing_baseline="04.00")
    np.testing.assert_allclose(raw, [-0.1, 0.0, 0.1234, 0.9], atol=1e-7)
    harmonized = bands.dn_to_reflectance(dn, processing_baseline="04.00", harmonized=True)
    np.testing.assert_allclose(harmonized, [0.0, 0.1, 0.2234, 1.0], atol=1e-7)
    assert raw.dtype == np.float32
    assert bands.EE_L1C_COLLECTION in bands.HARMONIZED_COLLECTIONS


def test_reflectance_dn_round_trip():
    reflectance = np.array([0.0, 0.0123, 0.5, 1.2], dtype=np.float32)
    for baseline in ("02.09", "04.00"):
        dn = bands.reflectance_to_dn(reflectance, processing_baseline=baseline)
        assert dn.dtype == np.uint16
        back = bands.dn_to_reflectance(dn, processing_baseline=baseline)
        np.testing.assert_allclose(back, reflectance, atol=0.5e-4 + 1e-7)
    assert bands.reflectance_to_dn(np.float32(0.1), processing_baseline="04.00") == 2000
