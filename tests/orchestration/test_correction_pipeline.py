"""The correction pipeline end to end with kfp.local: two small scenes under a ``gs://`` prefix
(the Cloud Storage emulator), the champion of a real MLflow server pinned once, a ``ParallelFor``
of two correction tasks, COGs and JSON items written beside them in the bucket."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pytest
import rasterio
from rasterio.windows import Window

from fakes.safe import BANDS, crop_bands, write_safe
from s2ac.io import storage
from s2ac.io.raster import write_raster

pytestmark = [pytest.mark.slow, pytest.mark.service]

MODEL_NAME = "s2ac-correction-pipeline-test"
CROP = Window(700, 900, 128, 160)  # 128 x 160 px of the real scene, a few 64 px tiles


def _scenes(folder: Path) -> tuple[list[Path], rasterio.crs.CRS]:
    """A zipped L1C SAFE and a 4-band DN GeoTIFF of the same crop."""
    crops = crop_bands(folder, CROP)
    safe = write_safe(folder / "safe", bands=crops, processing_baseline="02.09", zipped=True)
    with rasterio.open(crops["B02"]) as src:
        crs, transform = src.crs, src.transform
    bands = []
    for band in BANDS:
        with rasterio.open(crops[band]) as src:
            bands.append(src.read(1))
    dn = np.stack(bands, axis=-1)
    geotiff = folder / "crop_dn.tif"
    write_raster(geotiff, dn, crs=crs, transform=transform, dtype="uint16", cog=False)
    return [safe, geotiff], crs


def _register_champion(tracking: str, folder: Path) -> str:
    """A small U-Net (64 px tiles) registered twice: champion on version 1, version 2 newer and
    unaliased, so an item naming version 1 shows the alias was resolved, not "latest"."""
    from s2ac.model.generator import build_generator
    from s2ac.registry.pyfunc import log_generator

    build_generator(64, 8, depth=6, seed=1).save(folder / "generator.keras")
    mlflow.set_tracking_uri(tracking)
    mlflow.set_experiment("correction-pipeline")
    example = np.full((1, 64, 64, 4), 0.1, np.float32)
    with mlflow.start_run():
        info = log_generator(folder / "generator.keras", example)
    champion = mlflow.register_model(info.model_uri, MODEL_NAME)
    mlflow.register_model(info.model_uri, MODEL_NAME)
    mlflow.MlflowClient().set_registered_model_alias(MODEL_NAME, "champion", champion.version)
    return str(champion.version)


def test_run_local_corrects_every_scene_with_the_pinned_champion(
    gcs_prefix: str, mlflow_server: str, tmp_path: Path
):
    scenes, crs = _scenes(tmp_path)
    for scene in scenes:
        storage.upload(scene, f"{gcs_prefix}scenes/{scene.name}")
    version = _register_champion(mlflow_server, tmp_path)
    out_prefix = f"{gcs_prefix}sr"
    command = [
        sys.executable, "-m", "s2ac", "pipeline", "run-local", "--pipeline", "correction",
        "--workdir", str(tmp_path / "wd"), "-o", f"registry.tracking_uri={mlflow_server}",
        "-o", f"registry.model_name={MODEL_NAME}", "-o", "predict.overlap=16",
        "-o", "pipeline.io_retries=0",
        "-P", f"source={gcs_prefix}scenes/", "-P", f"out_prefix={out_prefix}",
    ]  # fmt: skip
    # STORAGE_EMULATOR_HOST (set by the gcs_emulator fixture) reaches every task's subprocess.
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    for task in ("pin-model", "find-scenes", "correct-scene"):
        assert f"'{task}" in output, task

    stems = sorted(scene.stem for scene in scenes)  # the SAFE zip's stem is its product name
    written = storage.list_uris(out_prefix + "/")
    assert written == sorted(f"{out_prefix}/{s}_sr.{ext}" for s in stems for ext in ("json", "tif"))
    items = {s: json.loads(storage.read_bytes(f"{out_prefix}/{s}_sr.json")) for s in stems}
    # every scene corrected by the version pinned before the fan-out: the champion's
    assert {i["properties"]["s2ac:model_version"] for i in items.values()} == {version}
    assert {i["properties"]["s2ac:model_uri"] for i in items.values()} == {
        f"models:/{MODEL_NAME}/{version}"
    }
    safe_item = items[scenes[0].stem]
    assert safe_item["properties"]["datetime"].startswith("2020-01-01T15:36")
    assert safe_item["properties"]["s2ac:input"] == f"{gcs_prefix}scenes/{scenes[0].name}"
    ring = safe_item["geometry"]["coordinates"][0]
    assert ring[0] == ring[-1] and -76 < safe_item["bbox"][0] < safe_item["bbox"][2] < -75
    for stem in stems:
        local = tmp_path / "cogs" / f"{stem}.tif"
        storage.download(f"{out_prefix}/{stem}_sr.tif", local)
        with rasterio.open(local) as cog:
            assert (cog.width, cog.height, cog.count) == (CROP.width, CROP.height, 4)
            assert cog.crs == crs
            assert cog.tags(ns="IMAGE_STRUCTURE").get("LAYOUT") == "COG"
            assert cog.tags()["S2AC_MODEL_VERSION"] == version
            assert np.isfinite(cog.read(1)).mean() > 0.9
