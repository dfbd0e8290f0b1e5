"""Physics corrections every learned one is compared with (the evaluation's physics baselines).

* identity: TOA taken as SR. The floor: a model that does not beat it has learned nothing.
* dark-object subtraction (DOS1, Chavez 1996): per image and band, the haze is the TOA value of
  the darkest pixels (0.1th percentile) minus the 1 % reflectance a dark object is assumed to have;
  SR = TOA - haze. Needs nothing but the image.
* 6S inversion with a fixed climatological atmosphere: the look-up table's exact inverse under
  :data:`CLIMATOLOGY` (median aerosol load and typical water vapour, ozone and geometry of the
  embedded dataset's distribution). What a physics chain gives without per-scene atmosphere.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from s2ac.physics.lut import Atmosphere, Lut

DARK_PERCENTILE = 0.1
DARK_OBJECT_REFLECTANCE = 0.01

CLIMATOLOGY = Atmosphere(
    aot550=0.35,
    aerosol_model="continental",
    water_vapour=2.75,
    ozone=0.285,
    solar_zenith=37.5,
    view_zenith=5.5,
    relative_azimuth=90.0,
    elevation_km=0.5,
    satellite="S2A",
)


def identity(toa: np.ndarray) -> np.ndarray:
    """TOA taken as SR."""
    return toa.astype(np.float32, copy=True)


def dark_object_subtraction(toa: np.ndarray) -> np.ndarray:
    """DOS1 per band of one image (H, W, bands); NaN pixels are ignored and kept."""
    haze = np.nanpercentile(toa, DARK_PERCENTILE, axis=(0, 1)) - DARK_OBJECT_REFLECTANCE
    return np.clip(toa - np.maximum(haze, 0.0), 0.0, None).astype(np.float32)


def sixs_climatology(toa: np.ndarray, lut: Lut | None = None) -> np.ndarray:
    """Invert the Lambertian 6S model under :data:`CLIMATOLOGY`."""
    return (lut or Lut.load()).inverse(toa, CLIMATOLOGY)


BASELINES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "identity": identity,
    "dos": dark_object_subtraction,
    "6s": sixs_climatology,
}
