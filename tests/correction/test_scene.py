"""Units of a scene are detected from a sample: small windows, or overviews when it has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from s2ac.correction.scene import open_scene
from s2ac.io.raster import write_raster

TRANSFORM = from_origin(5e5, 5e6, 10, 10)


def _scene(tmp_path: Path, data: np.ndarray, cog: bool, dtype: str = "float32") -> Path:
    name = f"scene_{dtype}_{'cog' if cog else 'tif'}.tif"
    return write_raster(tmp_path / name, data, crs="EPSG:32632", transform=TRANSFORM,
                        nodata=0, cog=cog, dtype=dtype)  # fmt: skip


@pytest.mark.parametrize("cog", [False, True])
def test_dn_and_reflectance_are_told_apart(tmp_path: Path, cog: bool):
    rng = np.random.default_rng(0)
    reflectance = rng.uniform(0.02, 0.4, (700, 900, 4)).astype("float32")
    dn = (reflectance * 10000 + 1000).round().astype("uint16")
    assert open_scene(_scene(tmp_path, reflectance, cog)).units == "reflectance"
    assert open_scene(_scene(tmp_path, dn, cog, "uint16")).units == "dn"


def test_dn_found_where_the_sample_windows_see_only_nodata(tmp_path: Path):
    """A swath edge: data in a band the 4 x 4 windows miss; the whole image is read instead."""
    dn = np.zeros((700, 900, 4), dtype="uint16")
    dn[140:180, 200:700] = 2500  # rows between the windows (0-128, 190-318, ...)
    assert open_scene(_scene(tmp_path, dn, False, "uint16")).units == "dn"
