"""Sentinel-2 band conventions used everywhere in s2ac.

Everything in s2ac is float32 reflectance, channels last, in the band order of :data:`BAND_NAMES`
(B2, B3, B4, B8: the four 10 m bands the paper uses). Raw products store reflectance as integer
digital numbers (DN): ``reflectance = (DN + offset) / 10000``. From processing baseline 04.00
(products from 2022-01-25 on) ESA adds 1000 to every DN, i.e. ``BOA_ADD_OFFSET`` /
``RADIO_ADD_OFFSET`` = -1000. Earth Engine's ``*_HARMONIZED`` collections shift those newer scenes
back, so their DNs never carry the offset.

Wavelengths: ESA Sentinel-2 MSI spectral response functions (COPE-GSEG-EOPG-TN-15-0007, v3.x);
central wavelength and bandwidth in nm, per satellite.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np

#: Band order of every array, file, TFRecord and model input/output.
BAND_NAMES: tuple[str, ...] = ("B2", "B3", "B4", "B8")
#: Ground sampling distance of the four bands (km): 10 m.
PIXEL_KM = 0.01
#: Names of the same bands in ESA product files (``T..._B02.jp2``) and Earth Engine.
ESA_BAND_NAMES: dict[str, str] = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}
N_BANDS = len(BAND_NAMES)

#: Reflectance = DN * REFLECTANCE_SCALE (+ offset, see below).
REFLECTANCE_SCALE = 1e-4
QUANTIFICATION_VALUE = 10_000
#: DN offset that processing baseline >= 04.00 adds (BOA_ADD_OFFSET = RADIO_ADD_OFFSET = -1000).
BASELINE_04_DN_OFFSET = 1000
BASELINE_04_FIRST_DAY = date(2022, 1, 25)

#: Earth Engine collections: harmonized, so DNs never carry the 1000 offset.
EE_L1C_COLLECTION = "COPERNICUS/S2_HARMONIZED"
EE_L2A_COLLECTION = "COPERNICUS/S2_SR_HARMONIZED"
HARMONIZED_COLLECTIONS = frozenset({EE_L1C_COLLECTION, EE_L2A_COLLECTION})


@dataclass(frozen=True)
class Band:
    """One MSI band: common name, resolution, and per-satellite centre/bandwidth (nm)."""

    name: str
    common_name: str
    resolution_m: int
    nominal_nm: float
    center_nm: dict[str, float]
    bandwidth_nm: dict[str, float]


BANDS: dict[str, Band] = {
    "B2": Band("B2", "blue", 10, 490.0, {"S2A": 492.7, "S2B": 492.3}, {"S2A": 65.0, "S2B": 65.0}),
    "B3": Band("B3", "green", 10, 560.0, {"S2A": 559.8, "S2B": 558.9}, {"S2A": 35.0, "S2B": 35.0}),
    "B4": Band("B4", "red", 10, 665.0, {"S2A": 664.6, "S2B": 664.9}, {"S2A": 30.0, "S2B": 31.0}),
    "B8": Band("B8", "nir", 10, 842.0, {"S2A": 832.8, "S2B": 832.9}, {"S2A": 105.0, "S2B": 104.0}),
}
SATELLITES = ("S2A", "S2B")


def band_index(name: str) -> int:
    """Position of a band in :data:`BAND_NAMES`; accepts ``B2`` or ``B02`` spellings."""
    normalized = name.strip().upper()
    for index, band in enumerate(BAND_NAMES):
        if normalized in (band, ESA_BAND_NAMES[band]):
            return index
    raise ValueError(f"unknown band {name!r}: expected one of {', '.join(BAND_NAMES)}")


def baseline_has_offset(processing_baseline: str) -> bool:
    """True if products of this processing baseline (e.g. ``"04.00"``) add 1000 to every DN."""
    try:
        major, minor = (int(part) for part in processing_baseline.strip().split("."))
    except ValueError as exc:
        raise ValueError(
            f"processing baseline {processing_baseline!r} is not of the form NN.NN"
        ) from exc
    return (major, minor) >= (4, 0)


def dn_offset(*, processing_baseline: str | None = None, harmonized: bool = False) -> int:
    """The DN offset to subtract before scaling: 1000 for baseline >= 04.00 unless harmonized."""
    if harmonized or processing_baseline is None:
        return 0
    return BASELINE_04_DN_OFFSET if baseline_has_offset(processing_baseline) else 0


def dn_to_reflectance(
    dn: np.ndarray, *, processing_baseline: str | None = None, harmonized: bool = False
) -> np.ndarray:
    """Convert digital numbers to float32 reflectance, removing the baseline-04.00 offset."""
    offset = dn_offset(processing_baseline=processing_baseline, harmonized=harmonized)
    return ((np.asarray(dn, dtype=np.float64) - offset) * REFLECTANCE_SCALE).astype(np.float32)


def reflectance_to_dn(
    reflectance: np.ndarray, *, processing_baseline: str | None = None, harmonized: bool = False
) -> np.ndarray:
    """Inverse of :func:`dn_to_reflectance`, rounded to uint16 as ESA stores it."""
    offset = dn_offset(processing_baseline=processing_baseline, harmonized=harmonized)
    dn = np.rint(np.asarray(reflectance, dtype=np.float64) / REFLECTANCE_SCALE) + offset
    return np.clip(dn, 0, np.iinfo(np.uint16).max).astype(np.uint16)
