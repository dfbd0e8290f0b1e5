"""s2ac.data.earthengine.export and ``s2ac data export``: planning, task bodies, tracking, resume,
chips.

The real earthengine-api client talks to the fake Earth Engine (tests/fakes/earthengine.py);
exports "run" by writing into the GCS emulator what Earth Engine would, and the training input
pipeline reads it back from gs://.
"""

from __future__ import annotations

import dataclasses
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import rasterio
from typer.testing import CliRunner

from fakes.earthengine import FakeEarthEngine, constant, function_names, invocations
from fakes.ee_fixtures import ee_fake_fixture, ee_key_fixture, ee_server_fixture  # noqa: F401
from s2ac.cli import app
from s2ac.config import EarthEngineConfig
from s2ac.data.earthengine import client as C
from s2ac.data.earthengine import export as X
from s2ac.data.earthengine import scenes as S
from s2ac.data.input import make_dataset
from s2ac.data.tfrecord import SR_KEYS, TOA_KEYS, list_tfrecords
from s2ac.errors import ExportTaskError, RequestTooLargeError
from s2ac.io import storage

service = pytest.mark.service
SEASON = ("2023-10-01", "2023-12-31")


def make_cfg(fake: FakeEarthEngine, key: Path, **values: Any) -> EarthEngineConfig:
    settings = {"start": SEASON[0], "end": SEASON[1], "n_images": 3, "bucket": "s2ac-test",
                "prefix": "export", "poll_initial_s": 1.0, "poll_max_s": 2.0, **values}  # fmt: skip
    return EarthEngineConfig(api_url=fake.url, service_account_key=str(key), **settings)


def gcs_cfg(fake: FakeEarthEngine, key: Path, gcs_prefix: str, **values: Any) -> EarthEngineConfig:
    bucket, folder = storage.split_gcs(gcs_prefix)
    return make_cfg(fake, key, bucket=bucket, prefix=f"{folder}export", **values)


def planned(fake: FakeEarthEngine, cfg: EarthEngineConfig, sleeps: list[float] | None = None):
    client = C.connect(cfg, sleep=(sleeps if sleeps is not None else []).append)
    return client, X.plan_export(client, cfg, seed=0, patch_size=256)


# --- grid and names ---------------------------------------------------------------------------


def test_pixel_grid_is_snapped_to_the_10m_grid_around_the_centre():
    assert X.pixel_grid((500_003.7, 2_000_008.2), 256) == (10, 0, 498_720, 0, -10, 2_001_290)
    x0, y0 = X.pixel_grid((512.0, 0.0), 512)[2::3]
    assert (x0 % 10, y0 % 10) == (0, 0) and (x0, y0) == (-2050, 2560)


def test_task_names_follow_earth_engine_rules():
    when = datetime(2023, 10, 4, tzinfo=UTC)
    index = "20231004T050701_20231004T051809_T43QGU"
    scene = S.Scene(index, "Dadra & Nagar Haveli (UT)", 3.0, when, "43QGU")
    task = X.ExportTask(
        scene, "EPSG:32643", (10, 0, 0, 0, -10, 0), 256, 256, "b", "p/x", "TFRecord"
    )
    name = task.description
    assert re.fullmatch(rf"s2ac_dadra-nagar-haveli-ut_{index}_[0-9a-f]{{6}}", name)
    assert re.fullmatch(r"[A-Za-z0-9_.,:;-]{1,100}", name)
    elsewhere = dataclasses.replace(task, file_prefix="q/x")
    assert elsewhere.description != name  # another destination: another task
    assert dataclasses.replace(task).description == name


# --- task bodies ------------------------------------------------------------------------------


@service
def test_export_request_carries_the_training_pair_grid_and_tfrecord_options(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], n_images=1)
    client, plan = planned(ee_fake, cfg.model_copy(update={"bucket": None}))
    (task,) = plan.tasks
    task = dataclasses.replace(task, bucket="my-bucket")
    client.call(X.export_task(task, cfg).start, "start")
    (request,) = ee_fake.recorded("image:export")
    body = request.body
    assert request.path == "/v1/projects/test-project/image:export"
    assert body["description"] == task.description and body["requestId"]
    options = body["fileExportOptions"]
    assert options["fileFormat"] == "TF_RECORD_IMAGE"
    assert options["cloudStorageDestination"] == {
        "bucket": "my-bucket", "filenamePrefix": f"export/{task.scene.index}"
    }  # fmt: skip
    assert options["tfRecordOptions"] == {
        "tileDimensions": {"width": 256, "height": 256},  # patchDimensions
        "compress": True,
        "maxMaskedRatio": {"value": 0.0},
    }
    expression = body["expression"]
    (reproject,) = {
        (constant(a["crs"]["functionInvocationValue"]["arguments"]["crs"]),
         tuple(constant(a["crsTransform"])))
        for a in invocations(expression, "Image.reproject")
    }  # fmt: skip
    assert reproject == (task.crs, task.transform)
    assert FakeEarthEngine.grid_size(expression) == (256, 256)
    selections = {
        (tuple(constant(a["bandSelectors"])), tuple(constant(a.get("newNames")) or ()))
        for a in invocations(expression, "Image.select")
    }
    bands = ("B2", "B3", "B4", "B8")
    assert selections == {(bands, TOA_KEYS), (bands, SR_KEYS), (("cs_cdf",), ())}
    scales = {
        constant(a["image2"]["functionInvocationValue"]["arguments"]["value"])
        for a in invocations(expression, "Image.multiply")
    }
    assert scales == {1e-4}
    thresholds = {
        constant(a["image2"]["functionInvocationValue"]["arguments"]["value"])
        for a in invocations(expression, "Image.gte")
    }
    assert thresholds == {0.6}
    assert {"Image.updateMask", "Image.toFloat", "Join.saveFirst"} <= set(
        function_names(expression)
    )
    (index,) = {
        constant(a.get("rightValue"))
        for a in invocations(expression, "Filter.equals")
        if constant(a.get("leftField")) == "system:index" and "rightValue" in a
    }
    assert index == task.scene.index
    day = task.scene.time.date()
    (days,) = {
        (constant(a["start"]), constant(a["end"])) for a in invocations(expression, "DateRange")
    }
    assert days == (str(day), str(day + timedelta(days=1)))  # narrows the index lookup


@service
def test_geotiff_export_request(ee_fake, ee_key):
    cfg = make_cfg(ee_fake, ee_key[0], n_images=1, file_format="GeoTIFF")
    client, plan = planned(ee_fake, cfg.model_copy(update={"bucket": None}))
    task = dataclasses.replace(plan.tasks[0], bucket="b")
    client.call(X.export_task(task, cfg).start, "start")
    options = ee_fake.recorded("image:export")[0].body["fileExportOptions"]
    assert options["fileFormat"] == "GEO_TIFF" and options["geoTiffOptions"] == {
        "cloudOptimized": True
    }


# --- running, tracking, resuming --------------------------------------------------------------


@service
def test_export_writes_records_that_the_training_pipeline_reads(
    ee_fake, ee_key, gcs_prefix, tmp_path
):
    ee_fake.polls_to_finish = 3
    cfg = gcs_cfg(ee_fake, ee_key[0], gcs_prefix)
    sleeps: list[float] = []
    client, plan = planned(ee_fake, cfg, sleeps)
    assert len(plan.tasks) == 3 and not plan.done
    report = X.run_export(client, plan, cfg)
    assert (report.started, report.succeeded, report.skipped, report.adopted) == (3, 3, 0, 0)
    assert sleeps == [1.0, 1.5]  # two rounds of polls before the tasks finish, growing 1.5x
    assert len(ee_fake.recorded("/operations/", "GET")) == 3 * 3
    files = list_tfrecords(f"{gcs_prefix}export/")
    assert files == sorted(report.outputs)
    assert all(f.endswith("-00000.tfrecord.gz") for f in files)
    dataset = make_dataset(files, patch_size=256, batch_size=3, training=False, cache_dir=tmp_path)
    toa, sr = next(iter(dataset))
    assert toa.shape == (3, 256, 256, 4) and sr.shape == (3, 256, 256, 4)
    toa, sr = toa.numpy(), sr.numpy()
    assert sr.min() > 0 and toa.max() < 1  # reflectance, not DN
    assert (toa[..., 0] > sr[..., 0]).all()  # path radiance brightens blue TOA
    markers = storage.list_uris(f"{gcs_prefix}export/_s2ac_tasks/")
    assert len(markers) == 3
    marker = json.loads(storage.read_bytes(markers[0]))
    assert marker["outputs"] == [f for f in files if marker["scene"] in f]
    assert marker["operation"].startswith("projects/test-project/operations/")


@service
def test_a_rerun_resumes_without_exporting_again(ee_fake, ee_key, gcs_prefix):
    cfg = gcs_cfg(ee_fake, ee_key[0], gcs_prefix)
    client, plan = planned(ee_fake, cfg)
    X.run_export(client, plan, cfg)
    ee_fake.reset()
    client, again = planned(ee_fake, cfg)
    assert again.tasks == plan.tasks and again.done == {t.scene.index for t in plan.tasks}
    report = X.run_export(client, again, cfg)
    assert (report.skipped, report.started) == (3, 0) and not ee_fake.recorded("image:export")
    # One output and its marker lost: only that task runs again.
    lost = plan.tasks[1]
    for uri in storage.list_uris(f"{gcs_prefix}export/"):
        if lost.scene.index in uri:
            storage.delete(uri)
    client, partial = planned(ee_fake, cfg)
    assert partial.pending == [lost]
    report = X.run_export(client, partial, cfg)
    assert (report.skipped, report.started, report.succeeded) == (2, 1, 1)
    (request,) = ee_fake.recorded("image:export")
    assert request.body["description"] == lost.description


@service
def test_tasks_still_running_in_earth_engine_are_tracked_not_restarted(ee_fake, ee_key, gcs_prefix):
    cfg = gcs_cfg(ee_fake, ee_key[0], gcs_prefix)
    client, plan = planned(ee_fake, cfg)
    client.call(X.export_task(plan.tasks[0], cfg).start, "start")  # an interrupted earlier run
    report = X.run_export(client, plan, cfg)
    assert (report.adopted, report.started, report.succeeded) == (1, 2, 3)
    assert len(ee_fake.recorded("image:export")) == 3  # 1 earlier + 2 now


@service
def test_a_failed_task_is_reported_with_its_id_and_message(ee_fake, ee_key, gcs_prefix):
    cfg = gcs_cfg(ee_fake, ee_key[0], gcs_prefix)
    client, plan = planned(ee_fake, cfg)
    broken = plan.tasks[0]
    ee_fake.fail_task(broken.scene.index, "Image.select: Pattern 'B8' did not match any bands.")
    with pytest.raises(ExportTaskError) as info:
        X.run_export(client, plan, cfg)
    message = str(info.value)
    (failed,) = [
        op["name"]
        for op in ee_fake.list_operations()["operations"]
        if op["metadata"]["state"] == "FAILED"
    ]
    assert message.startswith("1 of 3 Earth Engine exports failed")
    task_id = failed.rsplit("/", 1)[-1]
    assert f"task {task_id} ({broken.description}): Image.select: Pattern 'B8' did not" in message
    markers = storage.list_uris(f"{gcs_prefix}export/_s2ac_tasks/")
    assert len(markers) == 2 and not any(broken.scene.index in m for m in markers)
    _, again = planned(ee_fake, cfg)
    assert again.pending == [broken]


@service
def test_quota_errors_while_starting_reuse_the_request_id(ee_fake, ee_key, gcs_prefix):
    cfg = gcs_cfg(ee_fake, ee_key[0], gcs_prefix, n_images=1)
    sleeps: list[float] = []
    client, plan = planned(ee_fake, cfg, sleeps)
    ee_fake.inject("image:export", 429, times=2)
    report = X.run_export(client, plan, cfg)
    requests = ee_fake.recorded("image:export")
    assert [r.status for r in requests] == [429, 429, 200] and report.succeeded == 1
    assert len({r.body["requestId"] for r in requests}) == 1  # Earth Engine dedupes on it
    assert client.retries == 2 and sleeps[:2] == [2.0, 4.0]


# --- computePixels ----------------------------------------------------------------------------


@service
def test_chips_over_48_mb_are_refused_before_any_request(ee_fake, ee_key, gcs_prefix, tmp_path):
    # 5 patches of 256 a side: 1280 px, 50 MiB. The plan lists the (emulator's) bucket.
    cfg = gcs_cfg(ee_fake, ee_key[0], gcs_prefix, n_images=2, patches_per_side=5)
    client, plan = planned(ee_fake, cfg)
    assert X.request_bytes(1254) <= X.MAX_REQUEST_BYTES < X.request_bytes(1255)
    with pytest.raises(RequestTooLargeError, match=r"1280x1280 px .* 50\.0 MB, over .* 48 MB"):
        X.fetch_chips(client, plan.tasks, str(tmp_path), cfg)
    assert not ee_fake.recorded("computePixels") and not list(tmp_path.iterdir())


@service
def test_chips_are_computed_and_written_as_georeferenced_geotiffs(
    ee_fake, ee_key, gcs_prefix, tmp_path
):
    cfg = gcs_cfg(ee_fake, ee_key[0], gcs_prefix, n_images=2)
    client, plan = planned(ee_fake, cfg)
    written = X.fetch_chips(client, plan.tasks, str(tmp_path / "chips"), cfg)
    assert len(written) == 2 and len(ee_fake.recorded("image:computePixels")) == 2
    body = ee_fake.recorded("image:computePixels")[0].body
    task = plan.tasks[0]
    assert body["fileFormat"] == "NPY" and body["grid"]["crsCode"] == task.crs
    assert body["grid"]["affineTransform"]["translateX"] == task.transform[2]
    assert body["grid"]["dimensions"] == {"width": 256, "height": 256}
    with rasterio.open(written[0]) as src:
        assert src.count == 8 and src.descriptions == (*TOA_KEYS, *SR_KEYS)
        assert src.crs.to_string() == task.crs and tuple(src.transform)[:6] == task.transform
        data = src.read()
    assert data.dtype == np.float32 and (data[0] > data[4]).all()  # TOA blue > SR blue


# --- the command ------------------------------------------------------------------------------


@service
def test_dry_run_prints_scenes_and_tasks_and_starts_nothing(
    ee_fake, ee_key, gcs_prefix, monkeypatch
):
    monkeypatch.setenv("EE_API_URL", ee_fake.url)
    bucket, folder = storage.split_gcs(gcs_prefix)
    args = ["data", "export", "--region", "india", "--start", SEASON[0], "--end", SEASON[1],
            "--bucket", bucket, "--prefix", f"{folder}india", "--n-images", "8", "--dry-run",
            "-o", f"data.earthengine.service_account_key={ee_key[0]}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = result.output
    assert "india, 2023-10-01 .. 2023-12-31" in out and "35 regions" in out
    assert re.search(r"Kerala\s+\d+\s+[01]\s+", out)
    assert len(re.findall(r"^\s+\d+\s+s2ac_\S+\s+EPSG:326\d\d .* to start$", out, re.M)) == 8
    assert "dry run: no task started" in out
    assert not ee_fake.recorded("image:export") and not ee_fake.recorded("/operations")
    assert not storage.list_uris(gcs_prefix)
