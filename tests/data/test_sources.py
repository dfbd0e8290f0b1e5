from pathlib import Path

import numpy as np
import pytest
import rasterio

from s2ac.bands import BAND_NAMES
from s2ac.data.sources import SENTINEL2_L1C, band_paths, export_sentinel2_l1c, load_sentinel2_l1c
from s2ac.io.raster import read_raster


def test_embedded_l1c_scene_is_real_sentinel2_reflectance():
    scene = load_sentinel2_l1c()
    assert scene.data.shape == (1947, 1933, 4)
    assert scene.data.dtype == np.float32
    assert scene.crs.to_epsg() == 32618
    assert scene.transform.a == 10.0
    means = scene.data.reshape(-1, 4).mean(axis=0)
    # TOA reflectance of a vegetated scene: blue ~0.1, red below NIR (B02 mean is ~1000 DN).
    assert 0.05 < means[0] < 0.2
    assert means[2] < means[3]
    assert SENTINEL2_L1C.licence == "MIT"
    assert all(path.is_file() for path in band_paths(SENTINEL2_L1C).values())


@pytest.mark.slow
def test_export_writes_a_4_band_cog(tmp_path: Path):
    out = export_sentinel2_l1c(tmp_path / "scene.tif")
    with rasterio.open(out) as dataset:
        assert dataset.count == 4
        assert dataset.descriptions == BAND_NAMES
        assert dataset.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
    back = read_raster(out)
    np.testing.assert_array_equal(back.data, load_sentinel2_l1c().data)
