"""Open what a user wants corrected: a GeoTIFF/COG (reflectance or DN) or an L1C SAFE product.

Either way the result is a :class:`Scene`: size, georeferencing, what the metadata says about the
acquisition (geometry, time, footprint) and ``read_rows`` returning float32 TOA reflectance,
bands B2, B3, B4, B8, NaN for nodata. Only the rows asked for are read, so a full tile never
sits in memory. Units are detected from a decimated read unless given: reflectance rarely
exceeds 1.5, DN are hundreds to thousands.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine
from rasterio.windows import Window

from s2ac.bands import BAND_NAMES
from s2ac.errors import InputDataError
from s2ac.io import raster, safe

Units = Literal["auto", "reflectance", "dn"]

#: Earth Engine's COPERNICUS/S2 image properties, kept as tags by ``s2ac data export``.
EE_SUN_ZENITH, EE_SUN_AZIMUTH = "MEAN_SOLAR_ZENITH_ANGLE", "MEAN_SOLAR_AZIMUTH_ANGLE"
EE_VIEW_ZENITH, EE_VIEW_AZIMUTH = "MEAN_INCIDENCE_ZENITH_ANGLE_", "MEAN_INCIDENCE_AZIMUTH_ANGLE_"


@dataclass
class Scene:
    """A scene ready to be corrected strip by strip; see the module doc."""

    path: str
    height: int
    width: int
    crs: CRS
    transform: Affine
    read_rows: Callable[[int, int], np.ndarray]
    units: str
    #: Acquisition geometry found in the metadata (names of :data:`s2ac.physics.tf_lut.GEOMETRY`).
    geometry: dict[str, float] = field(default_factory=dict)
    #: What else the metadata says (datetime, footprint, processing baseline...), for the item.
    properties: dict[str, Any] = field(default_factory=dict)


def relative_azimuth(sun_azimuth: float, view_azimuth: float) -> float:
    """|sun - view| azimuth folded into 0..180 degrees, as the look-up table takes it."""
    difference = abs(sun_azimuth - view_azimuth) % 360.0
    return 360.0 - difference if difference > 180.0 else difference


def _tag_geometry(tags: dict[str, str]) -> dict[str, float]:
    """Geometry from Earth Engine property tags, where a GeoTIFF carries them."""
    try:
        sun_zenith = float(tags[EE_SUN_ZENITH])
        sun_azimuth = float(tags[EE_SUN_AZIMUTH])
        zeniths = [float(tags[f"{EE_VIEW_ZENITH}{b}"]) for b in BAND_NAMES]
        azimuths = [float(tags[f"{EE_VIEW_AZIMUTH}{b}"]) for b in BAND_NAMES]
    except (KeyError, ValueError):
        return {}
    found = {
        "solar_zenith": sun_zenith,
        "view_zenith": float(np.mean(zeniths)),
        "relative_azimuth": relative_azimuth(sun_azimuth, float(np.mean(azimuths))),
    }
    spacecraft = tags.get("SPACECRAFT_NAME", "")
    if spacecraft.startswith("Sentinel-2"):
        found["satellite"] = {"A": 0.0, "B": 1.0}.get(spacecraft[-1], 1.0)
    return found


#: Units are detected from a grid of this many windows per side, each this many pixels wide.
UNIT_WINDOWS, UNIT_WINDOW_PX = 4, 128


def _detect_units(path: str, src: Any) -> str:
    """``"dn"`` when the 99th percentile of a sample is far above any reflectance.

    The sample is a grid of small windows, or the whole image decimated when the file has
    overviews to read it from: without them, a decimated read decodes every block (4 s for a
    full tile), the windows only the blocks they touch."""
    try:
        sample = None if src.overviews(1) else _window_sample(src)
        if sample is None or np.count_nonzero(np.isfinite(sample) & (sample != 0)) < 1000:
            scale = max(1, max(src.width, src.height) // 512)  # mostly nodata: read it all
            shape = (src.count, max(1, src.height // scale), max(1, src.width // scale))
            sample = src.read(out_shape=shape, masked=True).astype(np.float32).filled(np.nan)
    except rasterio.errors.RasterioError as exc:
        raise InputDataError(path, f"corrupt or truncated raster, GDAL cannot read it: {exc}",
                             "re-download it") from exc  # fmt: skip
    finite = sample[np.isfinite(sample) & (sample != 0)]
    p99 = float(np.percentile(finite, 99)) if finite.size else 0.0
    return "dn" if p99 > raster.DN_PERCENTILE_LIMIT else "reflectance"


def _window_sample(src: Any) -> np.ndarray:
    """Pixels of a :data:`UNIT_WINDOWS` x :data:`UNIT_WINDOWS` grid of small windows."""
    side = min(UNIT_WINDOW_PX, src.width, src.height)
    tops = np.unique(np.linspace(0, src.height - side, UNIT_WINDOWS).astype(int))
    lefts = np.unique(np.linspace(0, src.width - side, UNIT_WINDOWS).astype(int))
    windows = [Window(left, top, side, side) for top in tops for left in lefts]
    return np.stack([src.read(window=w, masked=True).astype(np.float32).filled(np.nan)
                     for w in windows])  # fmt: skip


def open_geotiff(
    path: str, *, units: Units = "auto", processing_baseline: str | None = None
) -> Scene:
    """A GeoTIFF/COG with bands B2, B3, B4, B8 (by description, else in that order)."""
    info = raster.raster_info(path)  # clear errors for missing, empty and corrupt files
    with raster._open(path) as src:
        raster._band_indexes(src, path, BAND_NAMES)  # wrong or missing bands fail here
        if src.crs is None:
            raise InputDataError(
                path, "has no CRS (coordinate reference system)",
                "georeference it: the output must land where the input is",
            )  # fmt: skip
        tags = src.tags()
        found = _detect_units(path, src) if units == "auto" else units
        crs, transform = src.crs, src.transform
    baseline = processing_baseline or tags.get("PROCESSING_BASELINE")
    harmonized = baseline is None  # no baseline known: Earth Engine's harmonized DN (no offset)

    def read_rows(start: int, stop: int) -> np.ndarray:
        window = Window(0, start, info["width"], stop - start)
        return raster.read_raster(
            path, window=window, units=found, processing_baseline=baseline,  # type: ignore[arg-type]
            harmonized=harmonized, max_nonfinite_fraction=1.0,
        ).data  # fmt: skip

    properties = {"processing_baseline": baseline, "datetime": tags.get("DATETIME")}
    return Scene(path, info["height"], info["width"], crs, transform, read_rows, found,
                 _tag_geometry(tags), properties)  # fmt: skip


def open_safe_scene(path: str) -> Scene:
    """An L1C SAFE product (folder or zip): its four 10 m bands plus metadata offsets and angles."""
    product = safe.open_safe(path)
    with contextlib.ExitStack() as stack:
        shapes = {}
        for band, band_path in product.band_paths.items():
            src = stack.enter_context(raster._open(band_path))
            shapes[band] = (src.height, src.width, src.crs, src.transform)
    (height, width, crs, transform), *others = shapes.values()
    if any(other[:2] != (height, width) for other in others):
        raise InputDataError(path, f"10 m bands differ in size: {shapes}", "re-download it")

    def read_rows(start: int, stop: int) -> np.ndarray:
        window = Window(0, start, width, stop - start)
        bands = []
        for band in BAND_NAMES:
            band_path = product.band_paths[band]
            try:
                with rasterio.open(band_path) as src:
                    dn = src.read(1, window=window)
            except rasterio.errors.RasterioError as exc:
                problem = f"corrupt band {band}: {exc}"
                raise InputDataError(band_path, problem, "re-download it") from exc
            bands.append(safe.to_reflectance(dn, product, band))
        return np.stack(bands, axis=-1)

    geometry = {
        "solar_zenith": product.solar_zenith,
        "view_zenith": product.view_zenith,
        "relative_azimuth": product.relative_azimuth,
        "satellite": 0.0 if product.satellite == "S2A" else 1.0,  # S2C: nearest, S2B's responses
    }
    properties = {
        "datetime": product.sensing_time,
        "footprint": product.footprint,
        "processing_baseline": product.processing_baseline,
        "tile_id": product.tile_id,
        "platform": product.satellite,
    }
    return Scene(path, height, width, crs, transform, read_rows, "dn", geometry, properties)


def open_scene(
    path: str | os.PathLike[str], *, units: Units = "auto", processing_baseline: str | None = None
) -> Scene:
    """A :class:`Scene` for a local GeoTIFF/COG or SAFE product (folder or ``.zip``)."""
    text = os.fspath(path)
    if safe.is_safe(text):
        return open_safe_scene(text)
    if text.lower().endswith(".zip") or text.rstrip("/").upper().endswith(".SAFE"):
        safe.open_safe(text)  # raises the precise reason it is no L1C product
    return open_geotiff(text, units=units, processing_baseline=processing_baseline)
