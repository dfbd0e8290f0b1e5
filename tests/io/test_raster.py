"""Tests of s2ac.io.raster on tiny rasters written to tmp_path."""

from __future__ import annotations

import os
import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import Affine
from rasterio.windows import Window

from s2ac.errors import InputDataError
from s2ac.io import raster
from s2ac.io.raster import iter_windows, raster_info, read_raster, write_raster

CRS = "EPSG:32643"
TRANSFORM = Affine(10.0, 0.0, 500_000.0, 0.0, -10.0, 3_000_000.0)
SIZE = 32


def reflectance(count: int = 4, size: int = SIZE, seed: int = 0) -> np.ndarray:
    """(C, H, W) float32 reflectance in 0..0.6, distinct per band."""
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.0, 0.5, (count, size, size))
    return (base + np.arange(count)[:, None, None] * 0.03).astype(np.float32)


def make_tif(
    path: Path,
    data: np.ndarray,
    *,
    descriptions: tuple[str, ...] | None = ("B2", "B3", "B4", "B8"),
    crs: str | None = CRS,
    nodata: float | None = None,
    **options: object,
) -> Path:
    """Write (C, H, W) ``data`` as a plain GeoTIFF with rasterio itself, not the code under test."""
    count, height, width = data.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=data.dtype.name,
        crs=crs,
        transform=TRANSFORM,
        nodata=nodata,
        **options,
    ) as dst:
        dst.write(data)
        if descriptions:
            dst.descriptions = descriptions
    return path


def rejects(path: Path, keyword: str, **kwargs: object) -> InputDataError:
    """read_raster(path) raises InputDataError naming the file and containing ``keyword``."""
    with pytest.raises(InputDataError) as info:
        read_raster(path, **kwargs)
    message = str(info.value)
    assert str(path) in message
    assert keyword.lower() in message.lower(), message
    return info.value


# --- round trip and layout -------------------------------------------------------------------


def test_round_trip_keeps_georeferencing_values_and_is_cog(tmp_path: Path) -> None:
    data = np.moveaxis(reflectance(), 0, -1)
    data[0, 0, :] = np.nan  # written as nodata, read back as NaN
    out = write_raster(
        tmp_path / "sub" / "out.tif", data, crs=CRS, transform=TRANSFORM, nodata=-9999
    )

    assert out == tmp_path / "sub" / "out.tif"
    assert os.listdir(out.parent) == ["out.tif"]  # no temp or sidecar left
    got = read_raster(out)
    assert got.crs == rasterio.crs.CRS.from_string(CRS)
    assert got.transform == TRANSFORM
    assert got.nodata == -9999
    assert got.descriptions == ("B2", "B3", "B4", "B8")
    assert got.data.dtype == np.float32 and got.data.shape == (SIZE, SIZE, 4)
    np.testing.assert_array_equal(got.data, data)  # NaN positions included
    with rasterio.open(out) as src:
        assert src.tags(ns="IMAGE_STRUCTURE")["LAYOUT"] == "COG"
        assert src.profile["compress"] == "deflate" and src.profile["tiled"]


def test_plain_geotiff_is_tiled_and_readable(tmp_path: Path) -> None:
    data = np.moveaxis(reflectance(), 0, -1)
    out = write_raster(tmp_path / "plain.tif", data, crs=CRS, transform=TRANSFORM, cog=False)
    with rasterio.open(out) as src:
        assert src.profile["tiled"] and "LAYOUT" not in src.tags(ns="IMAGE_STRUCTURE")
    np.testing.assert_array_equal(read_raster(out).data, data)


def test_write_rejects_descriptions_not_matching_channels(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="descriptions"):
        write_raster(tmp_path / "x.tif", np.zeros((4, 4, 3)), crs=CRS, transform=TRANSFORM)
    assert list(tmp_path.iterdir()) == []


# --- band mapping, windows, info -------------------------------------------------------------


def test_bands_mapped_by_description_whatever_the_stored_order(tmp_path: Path) -> None:
    stored = reflectance()[::-1].copy()  # file order B8, B4, B3, B2
    path = make_tif(tmp_path / "rev.tif", stored, descriptions=("B08", "b04", "B3", "B02"))
    got = read_raster(path)
    assert got.descriptions == ("B2", "B3", "B4", "B8")
    np.testing.assert_array_equal(got.data, np.moveaxis(stored[::-1], 0, -1))
    only = read_raster(path, bands=["B8", "B2"])
    np.testing.assert_array_equal(only.data, np.moveaxis(stored[[0, 3]], 0, -1))


def test_bands_mapped_by_order_without_descriptions(tmp_path: Path) -> None:
    stored = reflectance()
    path = make_tif(tmp_path / "plain.tif", stored, descriptions=None)
    got = read_raster(path)
    assert got.descriptions == ("B2", "B3", "B4", "B8")
    np.testing.assert_array_equal(got.data, np.moveaxis(stored, 0, -1))
    assert read_raster(path, bands=None).data.shape == (SIZE, SIZE, 4)


def test_windowed_read_returns_the_sub_array_and_its_transform(tmp_path: Path) -> None:
    stored = reflectance()
    path = make_tif(tmp_path / "w.tif", stored)
    got = read_raster(path, window=Window(col_off=8, row_off=4, width=16, height=10))
    np.testing.assert_array_equal(got.data, np.moveaxis(stored[:, 4:14, 8:24], 0, -1))
    assert got.transform == TRANSFORM @ TRANSFORM.translation(8, 4)
    with pytest.raises(ValueError, match="not inside"):
        read_raster(path, window=Window(20, 0, 16, 16))


@pytest.mark.parametrize(("size", "stride"), [(12, None), (16, 8), (32, None), (48, None)])
def test_iter_windows_covers_the_raster(tmp_path: Path, size: int, stride: int | None) -> None:
    path = make_tif(tmp_path / "w.tif", reflectance())
    covered = np.zeros((SIZE, SIZE), dtype=int)
    for window in iter_windows(path, size, stride):
        assert (window.width, window.height) == (min(size, SIZE),) * 2  # shifted, never clipped
        assert window.col_off >= 0 and window.col_off + window.width <= SIZE
        assert window.row_off >= 0 and window.row_off + window.height <= SIZE
        covered[window.toslices()] += 1
    assert covered.min() >= 1
    with pytest.raises(ValueError, match="stride"):
        iter_windows(path, 8, 16)


def test_raster_info_without_reading_pixels(tmp_path: Path) -> None:
    path = make_tif(tmp_path / "i.tif", reflectance(), nodata=0.0)
    assert raster_info(path) == {
        "width": SIZE,
        "height": SIZE,
        "count": 4,
        "crs": CRS,
        "dtype": "float32",
        "descriptions": ("B2", "B3", "B4", "B8"),
        "nodata": 0.0,
    }


# --- rejections ------------------------------------------------------------------------------


def test_rejects_wrong_band_count(tmp_path: Path) -> None:
    path = make_tif(tmp_path / "three.tif", reflectance(3), descriptions=None)
    rejects(path, "expected 4 bands B2, B3, B4, B8, found 3")


def test_rejects_missing_band_description(tmp_path: Path) -> None:
    path = make_tif(tmp_path / "b5.tif", reflectance(), descriptions=("B2", "B3", "B4", "B5"))
    rejects(path, "band B8 not found in band descriptions")


def test_rejects_missing_crs_unless_told_otherwise(tmp_path: Path) -> None:
    path = make_tif(tmp_path / "nocrs.tif", reflectance(), crs=None)
    rejects(path, "no CRS")
    with pytest.warns(UserWarning, match=re.escape(f"{path}: has no CRS")):
        got = read_raster(path, on_missing_crs="warn")
    assert got.crs is None and got.data.shape == (SIZE, SIZE, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        assert read_raster(path, on_missing_crs="ignore").crs is None


def test_rejects_dn_where_reflectance_expected(tmp_path: Path) -> None:
    path = make_tif(tmp_path / "dn.tif", np.full((4, SIZE, SIZE), 1234, dtype=np.uint16))
    error = rejects(path, "looks like digital numbers (DN), not reflectance")
    assert "convert_dn=True" in str(error) and "1e-04" in str(error)


def test_rejects_reflectance_below_the_product_floor(tmp_path: Path) -> None:
    """-0.1 (Level-2A's offset floor) is accepted, -0.98 (DN with a wrong offset) is not."""
    data = reflectance()
    data[0, 0, 0] = -0.1
    read_raster(make_tif(tmp_path / "floor.tif", data))
    data[1, 2, 3] = -0.98
    rejects(make_tif(tmp_path / "negative.tif", data), "down to -0.980")


def test_convert_dn_scales_and_removes_baseline_offset(tmp_path: Path) -> None:
    dn = np.random.default_rng(1).integers(1000, 9000, (4, SIZE, SIZE)).astype(np.uint16)
    path = make_tif(tmp_path / "dn.tif", dn)
    expected = np.moveaxis(dn, 0, -1).astype(np.float64)
    got = read_raster(path, convert_dn=True)
    np.testing.assert_allclose(got.data, expected * 1e-4, rtol=0, atol=1e-6)
    assert got.data.dtype == np.float32
    np.testing.assert_allclose(read_raster(path, units="dn").data, got.data, rtol=0, atol=0)
    old = read_raster(path, convert_dn=True, processing_baseline="04.00", harmonized=False)
    np.testing.assert_allclose(old.data, (expected - 1000) * 1e-4, rtol=0, atol=1e-6)


def test_rejects_nan_share_above_limit_and_accepts_just_below(tmp_path: Path) -> None:
    data = reflectance()
    data[2].flat[:11] = np.nan  # 11 / 1024 pixels = 1.07 %
    rejects(make_tif(tmp_path / "nan.tif", data), "NaN/inf share 1.1% above the 1.0% limit")
    data[2].flat[10] = 0.1  # 10 / 1024 = 0.98 %
    got = read_raster(make_tif(tmp_path / "ok.tif", data))
    assert np.isnan(got.data).sum() == 10


def test_rejects_inf_and_counts_nodata_as_missing(tmp_path: Path) -> None:
    data = reflectance()
    data[0, :4, :] = np.inf  # 128 / 1024 = 12.5 %
    rejects(make_tif(tmp_path / "inf.tif", data), "NaN/inf share 12.5% above the 1.0% limit")
    got = read_raster(tmp_path / "inf.tif", max_nonfinite_fraction=0.2)
    assert np.isnan(got.data[:4, :, 0]).all()  # inf became NaN: one mask downstream
    data = reflectance()
    data[:, :4, :] = -1.0
    path = make_tif(tmp_path / "nodata.tif", data, nodata=-1.0)
    rejects(path, "NaN/inf share 12.5%")
    assert np.isnan(read_raster(path, max_nonfinite_fraction=0.2).data[:4]).all()


def test_rejects_nonexistent_file(tmp_path: Path) -> None:
    rejects(tmp_path / "missing.tif", "does not exist")


def test_rejects_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.tif"
    path.touch()
    rejects(path, "empty file (0 bytes)")


def test_rejects_corrupt_file(tmp_path: Path) -> None:
    path = tmp_path / "noise.tif"
    path.write_bytes(np.random.default_rng(2).bytes(4096))
    rejects(path, "corrupt or truncated")
    with pytest.raises(InputDataError, match="corrupt"):
        raster_info(path)


def test_rejects_truncated_file(tmp_path: Path) -> None:
    # Uncompressed, no descriptions (which would move the TIFF directory to the end): the header
    # at the start survives, half of the pixel data does not.
    path = make_tif(tmp_path / "cut.tif", reflectance(size=128), descriptions=None, compress="none")
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])
    assert raster_info(path)["width"] == 128  # opens fine: the failure is in the read
    rejects(path, "corrupt or truncated raster, GDAL cannot read it")


# --- atomic write ----------------------------------------------------------------------------


@pytest.mark.parametrize("cog", [True, False])
def test_failed_write_leaves_no_file_and_keeps_existing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cog: bool
) -> None:
    final = tmp_path / "out.tif"
    final.write_bytes(b"previous result")
    real_open = rasterio.open
    temp_files_seen: list[bool] = []

    class FailingWriter:
        """Writes the pixels for real, then fails like a full disk would."""

        def __init__(self, dataset: rasterio.io.DatasetWriter) -> None:
            self.dataset = dataset

        def __enter__(self) -> FailingWriter:
            return self

        def __exit__(self, *exc: object) -> None:
            self.dataset.close()
            temp_files_seen.append(Path(self.dataset.name).exists())

        def write(self, array: np.ndarray) -> None:
            self.dataset.write(array)
            raise OSError("No space left on device")

    def failing_open(fp: str | Path, mode: str = "r", **kwargs: object) -> object:
        dataset = real_open(fp, mode, **kwargs)
        return FailingWriter(dataset) if mode == "w" else dataset

    monkeypatch.setattr(raster.rasterio, "open", failing_open)
    data = np.moveaxis(reflectance(), 0, -1)
    with pytest.raises(OSError, match="No space left"):
        write_raster(final, data, crs=CRS, transform=TRANSFORM, cog=cog)

    assert temp_files_seen == [True]  # the temp file really was written before the failure
    assert os.listdir(tmp_path) == ["out.tif"]
    assert final.read_bytes() == b"previous result"
