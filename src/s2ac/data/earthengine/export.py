"""Export sampled Sentinel-2 pairs from Earth Engine to Cloud Storage, and track the tasks.

:func:`plan_export` finds the scenes of a region (:mod:`s2ac.data.earthengine.scenes`), samples
them across states, and makes one :class:`ExportTask` per scene: a square of ``patches_per_side``
patches of ``patch_size`` pixels at 10 m, centred on the part of the scene inside its state and
aligned to the scene's 10 m UTM grid (no resampling). Tasks whose output is already in the
bucket are marked done, so a rerun resumes instead of exporting twice.

:func:`run_export` starts the other tasks with ``Export.image.toCloudStorage`` (TFRecord patches
with ``patchDimensions`` = patch size, GZIP-compressed, bands named as in
:mod:`s2ac.data.tfrecord`; or a cloud-optimized GeoTIFF), adopts tasks already running under the
same description instead of starting them again, polls them with growing intervals, writes a
marker per finished task, and raises :class:`~s2ac.errors.ExportTaskError` naming every failed
task. The TFRecord files land directly in ``gs://bucket/prefix/``, where
:func:`s2ac.data.tfrecord.list_tfrecords` and ``make_dataset`` read them for training.

:func:`fetch_chips` is the direct path for a few chips: ``ee.data.computePixels`` (at most 48 MB
a request, checked before sending), written as 8-band GeoTIFFs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import statistics
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ee
import numpy as np
from rasterio.transform import Affine

from s2ac.config import EarthEngineConfig
from s2ac.console import track
from s2ac.data.earthengine.client import EarthEngine
from s2ac.data.earthengine.scenes import (
    Scene,
    SceneListing,
    chip_centres,
    find_scenes,
    parse_region,
    scene_image,
    stratified_sample,
)
from s2ac.data.tfrecord import SR_KEYS, TFRECORD_SUFFIXES, TOA_KEYS
from s2ac.errors import ConfigError, ExportTaskError, RequestTooLargeError
from s2ac.io import storage
from s2ac.io.raster import write_raster

log = logging.getLogger(__name__)

PIXEL_SIZE_M = 10
#: Earth Engine's limit on one computePixels request (uncompressed pixel bytes).
MAX_REQUEST_BYTES = 48 * 1024 * 1024
MARKER_FOLDER = "_s2ac_tasks"
# Earth Engine names outputs <prefix>-00000.tfrecord.gz (more parts: -00001...) or <prefix>.tif
_SUFFIXES = (*TFRECORD_SUFFIXES, ".tif")
_ACTIVE_STATES = frozenset({"PENDING", "RUNNING"})
_POLL_GROWTH = 1.5


@dataclass(frozen=True)
class ExportTask:
    """One export: a scene, its pixel grid, and where the files go."""

    scene: Scene
    crs: str
    transform: tuple[float, float, float, float, float, float]  # xScale, 0, x0, 0, yScale, y0
    size_px: int
    patch_px: int
    bucket: str | None
    file_prefix: str  # object name prefix inside the bucket
    file_format: str

    @property
    def description(self) -> str:
        """Task name shown by Earth Engine (<= 100 characters of [A-Za-z0-9_-]).

        It ends with a hash of the destination, so a rerun adopts only the running tasks that
        write where it would (not those of another export of the same scene).
        """
        stratum = re.sub(r"[^a-z0-9]+", "-", self.scene.stratum.lower()).strip("-")[:40]
        where = f"{self.bucket}/{self.file_prefix}/{self.file_format}/{self.size_px}"
        digest = hashlib.sha256(where.encode()).hexdigest()[:6]
        return f"s2ac_{stratum}_{self.scene.index}_{digest}"[:100]

    @property
    def destination(self) -> str:
        return f"gs://{self.bucket or '<bucket>'}/{self.file_prefix}"


@dataclass(frozen=True)
class ExportPlan:
    """Scenes found, sampled, and the tasks to run (``done``: scene indexes already exported)."""

    listing: SceneListing
    sampled: tuple[Scene, ...]
    tasks: tuple[ExportTask, ...]
    done: frozenset[str] = frozenset()
    seed: int = 0

    @property
    def pending(self) -> list[ExportTask]:
        return [task for task in self.tasks if task.scene.index not in self.done]


@dataclass
class ExportReport:
    """What :func:`run_export` did."""

    skipped: int = 0  # output already in the bucket
    adopted: int = 0  # already running in Earth Engine, tracked instead of restarted
    started: int = 0
    succeeded: int = 0
    outputs: list[str] = field(default_factory=list)  # files written by the tasks run now


# --- planning ---------------------------------------------------------------------------------


def pixel_grid(
    centre: tuple[float, float], size_px: int
) -> tuple[float, float, float, float, float, float]:
    """Affine transform of a ``size_px`` square around ``centre``, snapped to the 10 m grid."""
    half = size_px * PIXEL_SIZE_M / 2
    x0 = round((centre[0] - half) / PIXEL_SIZE_M) * PIXEL_SIZE_M
    y0 = round((centre[1] + half) / PIXEL_SIZE_M) * PIXEL_SIZE_M
    return (PIXEL_SIZE_M, 0, x0, 0, -PIXEL_SIZE_M, y0)


def make_tasks(
    scenes: Sequence[Scene],
    centres: dict[str, tuple[float, float]],
    cfg: EarthEngineConfig,
    patch_size: int,
) -> list[ExportTask]:
    """One task per located scene; files under ``cfg.prefix/<system:index>``."""
    prefix = cfg.prefix.strip("/")
    size = cfg.patches_per_side * patch_size
    return [
        ExportTask(
            scene=scene,
            crs=scene.crs,
            transform=pixel_grid(centres[scene.index], size),
            size_px=size,
            patch_px=patch_size,
            bucket=cfg.bucket,
            file_prefix=f"{prefix}/{scene.index}" if prefix else scene.index,
            file_format=cfg.file_format,
        )
        for scene in scenes
        if scene.index in centres
    ]


def _folder(task: ExportTask) -> str:
    """``gs://bucket/prefix/`` holding the task's files."""
    return task.destination.rsplit("/", 1)[0] + "/"


def _marker(task: ExportTask) -> str:
    return f"{_folder(task)}{MARKER_FOLDER}/{task.scene.index}.json"


def _outputs(task: ExportTask, present: Sequence[str]) -> list[str]:
    """The task's output files among ``present`` URIs (``<prefix>-00000.tfrecord.gz``...)."""
    stem = task.destination
    return sorted(
        uri
        for uri in present
        if uri.startswith(stem) and uri[len(stem) :][:1] in "-." and uri.endswith(_SUFFIXES)
    )


def exported(tasks: Sequence[ExportTask]) -> frozenset[str]:
    """Scene indexes whose output (or s2ac's completion marker) is already in the bucket."""
    if not tasks or tasks[0].bucket is None:
        return frozenset()
    present = storage.list_uris(_folder(tasks[0]), recursive=True)
    markers = set(present)
    return frozenset(
        task.scene.index for task in tasks if _marker(task) in markers or _outputs(task, present)
    )


def plan_export(
    client: EarthEngine, cfg: EarthEngineConfig, *, seed: int, patch_size: int
) -> ExportPlan:
    """Find, sample and locate scenes; check the bucket for outputs of an earlier run."""
    region = parse_region(cfg.region, cfg)
    listing = find_scenes(client, cfg, region)
    sampled = stratified_sample(listing.scenes, cfg.n_images, seed)
    centres = chip_centres(client, sampled, region, cfg)
    tasks = make_tasks(sampled, centres, cfg, patch_size)
    return ExportPlan(listing, tuple(sampled), tuple(tasks), exported(tasks), seed)


def format_plan(plan: ExportPlan, cfg: EarthEngineConfig) -> str:
    """Scenes found and sampled per stratum, then the task list, as aligned plain text."""
    listing = plan.listing
    lines = [
        f"Earth Engine export plan: {listing.region.label}, {listing.start} .. {listing.end} "
        f"(inclusive)",
        f"{len(listing.strata)} regions, {len(listing.scenes)} scenes found (L1C + L2A + Cloud "
        f"Score+, <= {cfg.max_cloud_percent:g}% cloud); {len(plan.sampled)} sampled (seed "
        f"{plan.seed}); {len(plan.tasks)} tasks, {len(plan.done)} already exported",
        "",
        f"{'region':<24} {'found':>6} {'sampled':>8} {'cloud% median':>14}  {'first':<10}  last",
    ]
    sampled: dict[str, int] = {}
    for scene in plan.sampled:
        sampled[scene.stratum] = sampled.get(scene.stratum, 0) + 1
    for stratum in listing.strata:
        scenes = [s for s in listing.scenes if s.stratum == stratum]
        if not scenes:
            lines.append(f"{stratum:<24} {0:>6} {0:>8} {'-':>14}  {'-':<10}  -")
            continue
        median = statistics.median(s.cloud_percent for s in scenes)
        first, last = min(s.time for s in scenes), max(s.time for s in scenes)
        lines.append(
            f"{stratum:<24} {len(scenes):>6} {sampled.get(stratum, 0):>8} {median:>14.1f}  "
            f"{first:%Y-%m-%d}  {last:%Y-%m-%d}"
        )
    width = max((len(task.description) for task in plan.tasks), default=11)
    if plan.tasks:
        size, patch = plan.tasks[0].size_px, plan.tasks[0].patch_px
        grid = f"{size}x{size} px at {PIXEL_SIZE_M} m in patches of {patch}x{patch}"
    else:
        grid = "no task"
    lines += [
        "",
        f"tasks: {cfg.file_format}, {grid}, pixels kept where cs_cdf >= "
        f"{cfg.cloud_score_threshold:g}; (x0, y0) = upper-left corner in the scene's UTM zone",
        f"{'#':>4}  {'description':<{width}} {'crs':<11} {'x0':>9} {'y0':>10}  status",
    ]
    for number, task in enumerate(plan.tasks, start=1):
        status = "exists, skip" if task.scene.index in plan.done else "to start"
        lines.append(
            f"{number:>4}  {task.description:<{width}} {task.crs:<11} {task.transform[2]:>9.0f} "
            f"{task.transform[5]:>10.0f}  {status}"
        )
    lines.append(f"destination: {plan.tasks[0].destination.rsplit('/', 1)[0]}/" if plan.tasks
                 else "destination: -")  # fmt: skip
    return "\n".join(lines)


# --- batch export -----------------------------------------------------------------------------


def export_task(task: ExportTask, cfg: EarthEngineConfig) -> ee.batch.Task:
    """The unstarted ``Export.image.toCloudStorage`` task of one :class:`ExportTask`."""
    if task.file_format == "TFRecord":
        format_options: dict[str, Any] = {
            "patchDimensions": [task.patch_px, task.patch_px],
            "compressed": True,
            "maskedThreshold": cfg.max_masked_fraction,
        }
    else:
        format_options = {"cloudOptimized": True}
    return ee.batch.Export.image.toCloudStorage(
        image=scene_image(task.scene, cfg.cloud_score_threshold),
        description=task.description,
        bucket=task.bucket,
        fileNamePrefix=task.file_prefix,
        dimensions=f"{task.size_px}x{task.size_px}",
        crs=task.crs,
        crsTransform=list(task.transform),
        fileFormat=task.file_format,
        formatOptions=format_options,
    )


def _active_operations(client: EarthEngine) -> dict[str, str]:
    """Description -> operation name of this project's pending or running tasks."""
    operations = client.call(ee.data.listOperations, "listing Earth Engine tasks")
    return {
        op["metadata"].get("description", ""): op["name"]
        for op in operations
        if op.get("metadata", {}).get("state") in _ACTIVE_STATES
    }


def _wait(
    client: EarthEngine, operations: dict[str, ExportTask], cfg: EarthEngineConfig
) -> Iterator[tuple[str, ExportTask, dict[str, Any]]]:
    """Yield ``(operation name, task, operation)`` as each finishes; polls with growing pauses."""
    pending = dict(operations)
    delay = cfg.poll_initial_s
    while pending:
        for name in list(pending):
            operation = client.call(lambda n=name: ee.data.getOperation(n), f"polling task {name}")
            if operation.get("done"):
                yield name, pending.pop(name), operation
        if pending:
            log.debug("%d tasks running; next poll in %.0f s", len(pending), delay)
            client.sleep(delay)
            delay = min(delay * _POLL_GROWTH, cfg.poll_max_s)


def run_export(client: EarthEngine, plan: ExportPlan, cfg: EarthEngineConfig) -> ExportReport:
    """Start the plan's pending tasks, track them to the end, and report.

    Raises:
        ExportTaskError: some tasks failed or were cancelled (after all others finished;
            finished ones are kept, and a rerun of the same command only redoes the failed).
    """
    if cfg.bucket is None:
        raise ConfigError("no bucket: pass --bucket or set data.earthengine.bucket")
    report = ExportReport(skipped=len(plan.done))
    pending = plan.pending
    active = _active_operations(client) if pending else {}
    operations: dict[str, ExportTask] = {}
    for task in track(pending, "Starting Earth Engine exports"):
        name = active.get(task.description)
        if name is None:
            ee_task = export_task(task, cfg)
            client.call(ee_task.start, f"starting export {task.description}")
            name = ee_task.name
            report.started += 1
        else:
            log.info("%s is already running as %s; tracking it", task.description, name)
            report.adopted += 1
        operations[name] = task
    failures = []
    for name, task, operation in track(
        _wait(client, operations, cfg), "Exporting", total=len(operations)
    ):
        metadata = operation.get("metadata", {})
        state = metadata.get("state", "UNKNOWN")
        if state == "SUCCEEDED":
            # destinationUris only names the folder (a console URL): list the files themselves.
            outputs = _outputs(task, storage.list_uris(task.destination))
            _write_marker(task, name, outputs)
            report.succeeded += 1
            report.outputs.extend(outputs)
        else:
            message = (operation.get("error") or {}).get("message") or state.lower()
            failures.append(f"task {name.rsplit('/', 1)[-1]} ({task.description}): {message}")
    if failures:
        raise ExportTaskError(
            f"{len(failures)} of {len(operations)} Earth Engine exports failed:\n  "
            + "\n  ".join(failures)
            + "\n(finished exports are kept; run the same command again to retry the failed)"
        )
    return report


def _write_marker(task: ExportTask, operation: str, outputs: list[str]) -> None:
    record = {
        "scene": task.scene.index,
        "stratum": task.scene.stratum,
        "operation": operation,
        "outputs": outputs,
        "crs": task.crs,
        "transform": list(task.transform),
        "size_px": task.size_px,  # with crs and transform: the chip's footprint, which
        "patch_px": task.patch_px,  # s2ac.data.assemble needs to keep places in one split
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    storage.write_bytes(_marker(task), json.dumps(record, indent=1).encode())


# --- direct path: computePixels ---------------------------------------------------------------


def request_bytes(size_px: int, n_bands: int = len(TOA_KEYS) + len(SR_KEYS)) -> int:
    """Uncompressed bytes of one float32 chip request."""
    return size_px * size_px * n_bands * 4


def fetch_chips(
    client: EarthEngine, tasks: Sequence[ExportTask], out_dir: str, cfg: EarthEngineConfig
) -> list[str]:
    """Compute each task's pixels with ``ee.data.computePixels``; write ``<index>.tif`` files.

    Each GeoTIFF has the bands ``toa_B2..toa_B8, sr_B2..sr_B8`` (reflectance, float32; masked
    pixels come back as 0) in the task's UTM grid. ``out_dir`` is a folder or ``gs://`` prefix.

    Raises:
        RequestTooLargeError: a chip exceeds 48 MB; checked for all chips before any request.
    """
    for task in tasks:
        size = request_bytes(task.size_px)
        if size > MAX_REQUEST_BYTES:
            raise RequestTooLargeError(
                f"chip {task.description}: {task.size_px}x{task.size_px} px x 8 float32 bands = "
                f"{size / 2**20:.1f} MB, over computePixels' limit of "
                f"{MAX_REQUEST_BYTES / 2**20:.0f} MB a request (lower "
                "data.earthengine.patches_per_side, or use the batch export)"
            )
    written = []
    keys = (*TOA_KEYS, *SR_KEYS)
    for task in track(tasks, "Fetching chips"):
        xs, _, x0, _, ys, y0 = task.transform
        params = {
            "expression": scene_image(task.scene, cfg.cloud_score_threshold),
            "fileFormat": "NUMPY_NDARRAY",
            "grid": {
                "dimensions": {"width": task.size_px, "height": task.size_px},
                "affineTransform": dict(
                    scaleX=xs, shearX=0, translateX=x0, shearY=0, scaleY=ys, translateY=y0
                ),
                "crsCode": task.crs,
            },
        }
        pixels = client.call(
            lambda p=params: ee.data.computePixels(p), f"pixels of {task.description}"
        )
        data = np.stack([np.asarray(pixels[key], dtype=np.float32) for key in keys], axis=-1)
        target = f"{out_dir.rstrip('/')}/{task.scene.index}.tif"
        _write_chip(target, data, task)
        written.append(target)
    return written


def _write_chip(target: str, data: np.ndarray, task: ExportTask) -> None:
    transform = Affine(*task.transform)
    keys = (*TOA_KEYS, *SR_KEYS)
    if not storage.is_gcs(target):
        write_raster(target, data, crs=task.crs, transform=transform, descriptions=keys)
        return
    with tempfile.TemporaryDirectory(prefix="s2ac-chip-") as folder:
        local = Path(folder) / os.path.basename(target)
        write_raster(local, data, crs=task.crs, transform=transform, descriptions=keys)
        storage.upload(str(local), target)
