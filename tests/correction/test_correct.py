"""``s2ac correct``: GeoTIFF (reflectance or DN) and SAFE in, georeferenced COG + item out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.windows import Window
from typer.testing import CliRunner

from fakes.safe import BANDS, crop_bands, write_safe
from s2ac.bands import BAND_NAMES
from s2ac.cli import app
from s2ac.config import PredictConfig
from s2ac.correction.correct import correct
from s2ac.correction.model import LoadedGenerator
from s2ac.correction.tiles import blend_array
from s2ac.errors import InputDataError
from s2ac.io.raster import write_raster
from s2ac.model.generator import build_generator
from s2ac.model.physics_generator import build_physics_generator

CROP = Window(700, 900, 288, 320)  # 288 x 320 px of the real scene: 5 x 6 tiles of 64 px
CONFIG = PredictConfig(overlap=16, batch_size=16)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("correct")


@pytest.fixture(scope="module")
def crops(workdir: Path) -> dict[str, Path]:
    return crop_bands(workdir, CROP)


@pytest.fixture(scope="module")
def unet(workdir: Path) -> Path:
    path = workdir / "unet.keras"
    build_generator(64, 8, depth=6, seed=1).save(path)
    return path


def reflectance(crops: dict[str, Path], offset: float = 0.0) -> np.ndarray:
    dn = np.stack([rasterio.open(crops[b]).read(1) for b in BANDS], axis=-1).astype(np.float32)
    return np.where(dn == 0, np.nan, (dn + offset) / 10000.0).astype(np.float32)


def expected(model_path: Path, toa: np.ndarray, geometry: tuple | None = None) -> np.ndarray:
    import keras

    network = keras.saving.load_model(model_path)
    predict = LoadedGenerator(network, str(model_path)).predictor(geometry, 16)
    return blend_array(toa, predict, tile=64, overlap=16)


def read(path: Path) -> tuple[np.ndarray, dict]:
    with rasterio.open(path) as src:
        meta = {"crs": src.crs, "transform": src.transform, "descriptions": src.descriptions,
                "tags": src.tags(), "layout": src.tags(ns="IMAGE_STRUCTURE").get("LAYOUT"),
                "overviews": src.overviews(1), "compress": src.profile.get("compress")}  # fmt: skip
        return np.moveaxis(src.read(), 0, -1), meta


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_zipped_safe_is_corrected_into_a_georeferenced_cog_with_an_item(workdir, crops, unet):
    product = write_safe(workdir / "safe", bands=crops, processing_baseline="04.00", zipped=True)
    out = workdir / "out" / "scene_sr.tif"
    result = correct(str(product), str(out), model=str(unet), config=CONFIG)
    data, meta = read(out)
    with rasterio.open(crops["B02"]) as src:
        assert meta["crs"] == src.crs and meta["transform"] == src.transform
    assert meta["layout"] == "COG" and meta["descriptions"] == tuple(BAND_NAMES)
    assert meta["compress"] == "zstd"  # predict.compression's default
    assert meta["tags"]["S2AC_MODEL_URI"] == str(unet)
    # Baseline 04.00: DN carry +1000, removed; DN 0 is nodata. Values equal the model's, blended.
    np.testing.assert_allclose(data, expected(unet, reflectance(crops, -1000.0)), atol=1e-5)
    item = json.loads(Path(result.item).read_text())
    assert item["properties"]["datetime"].startswith("2020-01-01T15:36")
    assert item["properties"]["s2ac:model_uri"] == str(unet)
    ring = item["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and -76 < item["bbox"][0] < item["bbox"][2] < -75
    assert (result.height, result.width, result.tiles) == (320, 288, 7 * 6)
    assert leftovers(out.parent) == ["scene_sr.json", "scene_sr.tif"]


def test_dn_geotiff_is_detected_and_equals_its_reflectance(workdir, crops, unet):
    toa = reflectance(crops)
    with rasterio.open(crops["B02"]) as src:
        crs, transform = src.crs, src.transform
    dn_tif = workdir / "dn.tif"
    dn = np.nan_to_num(toa * 10000.0).round().astype("uint16")
    write_raster(dn_tif, dn, crs=crs, transform=transform, dtype="uint16", cog=False)
    sr_tif = workdir / "refl.tif"
    write_raster(sr_tif, toa, crs=crs, transform=transform, nodata=-9999.0, cog=False)
    runner = CliRunner()
    for source in (dn_tif, sr_tif):
        out = workdir / f"{source.stem}_sr.tif"
        answer = runner.invoke(app, ["correct", str(source), "-O", str(out), "--model", str(unet),
                                     "-o", "predict.overlap=16",
                                     "-o", "predict.compression=deflate"])  # fmt: skip
        assert answer.exit_code == 0, answer.output
        assert "wrote" in answer.output
    from_dn, meta = read(workdir / "dn_sr.tif")
    assert meta["compress"] == "deflate"  # for readers without ZSTD
    from_reflectance, _ = read(workdir / "refl_sr.tif")
    np.testing.assert_allclose(from_dn, from_reflectance, atol=2e-4)  # DN rounding only
    np.testing.assert_allclose(from_reflectance, expected(unet, toa), atol=1e-5)


def test_the_physics_generator_takes_geometry_from_metadata_or_options(workdir, crops):
    model = workdir / "physics.keras"
    build_physics_generator(64, 8, seed=0).save(model)
    toa = reflectance(crops)
    with rasterio.open(crops["B02"]) as src:
        crs, transform = src.crs, src.transform
    plain = workdir / "plain.tif"
    write_raster(plain, toa, crs=crs, transform=transform, cog=False)
    with pytest.raises(InputDataError, match=r"--sun-zenith.*--view-zenith"):
        correct(str(plain), str(workdir / "p_sr.tif"), model=str(model), config=CONFIG)
    assert not (workdir / "p_sr.tif").exists()
    given = {"solar_zenith": 35.2, "view_zenith": 5.3, "relative_azimuth": 45.1, "satellite": 0}
    correct(str(plain), str(workdir / "p_sr.tif"), model=str(model), config=CONFIG,
            geometry=given)  # fmt: skip
    product = write_safe(workdir / "psafe", bands=crops, processing_baseline="02.09")
    correct(str(product), str(workdir / "s_sr.tif"), model=str(model), config=CONFIG)
    from_options, _ = read(workdir / "p_sr.tif")
    from_metadata, _ = read(workdir / "s_sr.tif")
    # Same pixels and angles (sun 35.2, view 5.3, azimuths 150.1 vs 105.0): the same result.
    np.testing.assert_allclose(from_metadata, from_options, atol=1e-5)
    geometry = (35.2, 5.3, 45.1, 0.5, 0.285, 0.0)
    np.testing.assert_allclose(from_options, expected(model, toa, geometry), atol=1e-5)


def test_an_output_it_did_not_write_is_not_replaced(workdir, crops, unet):
    product = write_safe(workdir / "safe2", bands=crops, processing_baseline="02.09")
    foreign = workdir / "foreign" / "theirs.tif"
    foreign.parent.mkdir()
    foreign.write_bytes(b"someone else's file")
    with pytest.raises(InputDataError, match="not written by s2ac correct"):
        correct(str(product), str(foreign), model=str(unet), config=CONFIG)
    assert foreign.read_bytes() == b"someone else's file"
    own = workdir / "foreign" / "ours.tif"
    correct(str(product), str(own), model=str(unet), config=CONFIG)
    correct(str(product), str(own), model=str(unet), config=CONFIG)  # a rerun replaces its own
    correct(str(product), str(foreign), model=str(unet), config=CONFIG, overwrite=True)
    assert read(foreign)[1]["layout"] == "COG"


def broken_inputs(workdir: Path, crops: dict[str, Path]) -> dict[str, tuple[Path, str]]:
    toa = reflectance(crops)
    with rasterio.open(crops["B02"]) as src:
        crs, transform = src.crs, src.transform
    three = workdir / "bad" / "three_bands.tif"
    write_raster(three, toa[..., :3], crs=crs, transform=transform, cog=False,
                 descriptions=("B2", "B3", "B4"))  # fmt: skip
    whole = write_raster(workdir / "bad" / "whole.tif", toa, crs=crs, transform=transform)
    corrupt = workdir / "bad" / "corrupt.tif"
    corrupt.write_bytes(whole.read_bytes()[:5000])  # a truncated download
    missing = write_safe(workdir / "bad", bands=crops, omit_band="B08", zipped=True)
    return {"wrong band count": (three, "band B8 not found"),
            "corrupt file": (corrupt, "corrupt"),
            "missing band": (missing, "B08")}  # fmt: skip


@pytest.mark.parametrize("case", ["wrong band count", "corrupt file", "missing band"])
def test_bad_input_is_a_clear_error_and_leaves_no_output(workdir, crops, unet, case):
    path, says = broken_inputs(workdir, crops)[case]
    out_dir = workdir / f"out-{case.replace(' ', '-')}"
    out_dir.mkdir()
    with pytest.raises(InputDataError, match=says) as error:
        correct(str(path), str(out_dir / "sr.tif"), model=str(unet), config=CONFIG)
    assert path.name in str(error.value)
    assert leftovers(out_dir) == []


def test_a_model_that_does_not_load_is_a_clear_error(workdir, crops, tmp_path):
    import mlflow.pyfunc

    from s2ac.registry.pyfunc import GENERATOR_ARTIFACT, GeneratorModel

    junk = tmp_path / "generator.keras"
    junk.write_bytes(b"not a keras file")
    mlflow.pyfunc.save_model(tmp_path / "model", python_model=GeneratorModel(),
                             artifacts={GENERATOR_ARTIFACT: str(junk)})  # fmt: skip
    product = write_safe(workdir / "safe3", bands=crops, processing_baseline="02.09")
    out = tmp_path / "out" / "sr.tif"
    with pytest.raises(InputDataError, match="cannot load the model"):
        correct(str(product), str(out), model=str(tmp_path / "model"), config=CONFIG)
    assert not out.parent.exists() or leftovers(out.parent) == []
