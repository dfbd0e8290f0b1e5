"""Turn an Earth Engine export into a trainable dataset: train/val/test shards and a manifest.

``s2ac data export`` leaves a flat folder of ``<system:index>-00000.tfrecord.gz`` files (plus
completion markers in ``_s2ac_tasks/``). ``s2ac train``, ``data validate`` and ``evaluate`` read
a dataset folder like the synthetic one: ``train/``, ``val/``, ``test/`` shards in the same
TFRecord schema and a ``manifest.json``. :func:`assemble_dataset` bridges the two, from and to
local folders or ``gs://`` prefixes:

1. Scan. Every record is read once (``gs://`` files through a temporary download) and its share
   of bad pixels measured: a non-finite band, or all four TOA or all four SR bands exactly 0,
   which is how Earth Engine fills masked pixels. Patches above ``max_nonfinite_fraction`` are
   dropped and counted. Bad values of the kept ones become 0 (Earth Engine's fill), because the
   loss has no NaN handling and one NaN would poison a whole batch.
2. Split by location, not by patch or scene. Scenes of one MGRS tile on other dates show the same
   ground (the export centres every chip on the scene's part of its state, so their chips nearly
   coincide), and chips of neighbouring tiles over a small state can overlap too. Scenes sharing
   a tile, or whose chips (from the markers' grids) lie within ``split_buffer_px`` of each other
   in the same UTM zone, form one group, and a group goes to one split. Groups are shuffled with
   the data seed and dealt to test, then val, while that brings each closer to its fraction of
   the patches; the rest is train.
3. Write. Shards of :data:`SHARD_SIZE` records; train records are dealt to shards in seeded random
   order so every shard mixes many scenes (tf.data's shuffle buffer only mixes nearby records).
   A local dataset is built in a staging folder and renamed into place; on ``gs://`` the old
   manifest is deleted first and the new one written last, so a manifest means complete.

Patch ids are ``<system:index>/<k>`` (k = the record's index in its scene's export, stable
whatever is dropped) unless the records carry one. Each sample's ``source``/``row``/``col`` (UTM
zone and the window's pixel position in its 10 m grid) let validation check leakage between
splits, when the scene's marker gives its grid and Earth Engine exported all its patches.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2ac import __version__
from s2ac.bands import BAND_NAMES, EE_L1C_COLLECTION, EE_L2A_COLLECTION
from s2ac.config import DataConfig
from s2ac.console import log, track
from s2ac.data.earthengine.export import MARKER_FOLDER, PIXEL_SIZE_M
from s2ac.data.earthengine.scenes import CLOUD_SCORE_PLUS
from s2ac.data.integrity import digest_of, file_sha256
from s2ac.data.synthetic import SHARD_SIZE, SPLITS
from s2ac.data.tfrecord import iter_records, list_tfrecords, serialize_pair
from s2ac.errors import InputDataError
from s2ac.io import outputs, storage
from s2ac.io.storage import localize_files

NAME = "s2ac-earthengine"
MANIFEST = "manifest.json"
_PART = re.compile(r"-\d{5}$")  # Earth Engine's -00000, -00001 ... parts of one export
_TILE = re.compile(r"_T(\d{1,2}[C-X][A-Z]{2})$")  # system:index ends with the MGRS tile


@dataclass
class _Patch:
    """One exported record: where it came from, how bad it is, and where it goes."""

    patch_id: str
    scene: str
    export_file: str
    export_record: int
    position: int  # index among its scene's records: row-major place in the chip
    bad_fraction: float
    group: str = ""
    split: str = ""
    shard: int = 0


@dataclass(frozen=True)
class _Chip:
    """A scene's exported window, from its marker: UTM zone, affine grid, size in pixels."""

    crs: str
    transform: tuple[float, ...]
    size_px: int
    stratum: str | None


def scene_of(uri: str) -> str:
    """``.../<system:index>-00000.tfrecord.gz`` -> ``<system:index>``."""
    name = uri.rstrip("/").rsplit("/", 1)[-1]
    stem = name.removesuffix(".gz").removesuffix(".tfrecord")
    return _PART.sub("", stem)


def tile_of(scene: str) -> str | None:
    """MGRS tile at the end of a Sentinel-2 ``system:index`` (``..._T43QGU`` -> ``43QGU``)."""
    match = _TILE.search(scene)
    return match.group(1) if match else None


def bad_pixel_fraction(toa: np.ndarray, sr: np.ndarray) -> float:
    """Share of pixels with a non-finite band, or masked (all TOA or all SR bands exactly 0)."""
    bad = ~(np.isfinite(toa).all(axis=-1) & np.isfinite(sr).all(axis=-1))
    bad |= (toa == 0).all(axis=-1) | (sr == 0).all(axis=-1)
    return float(bad.mean())


def location_groups(
    scenes: Sequence[str], chips: Mapping[str, _Chip], buffer_px: int
) -> dict[str, str]:
    """Scene -> group label: scenes of one tile, or with chips closer than ``buffer_px`` (same
    UTM zone), are joined (transitively); the label is the group's first tile or scene."""
    parent = list(range(len(scenes)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    def join(pairs: Iterable[tuple[int, int]]) -> None:
        for a, b in pairs:
            parent[find(a)] = find(b)

    first_of_tile: dict[str, int] = {}
    for i, scene in enumerate(scenes):
        tile = tile_of(scene)
        if tile is not None:
            join([(i, first_of_tile.setdefault(tile, i))])
    by_crs: dict[str, list[int]] = {}
    for i, scene in enumerate(scenes):
        if scene in chips:
            by_crs.setdefault(chips[scene].crs, []).append(i)
    for members in by_crs.values():
        boxes = np.array([_box(chips[scenes[i]]) for i in members])  # x0, y0 (top), x1, y1
        gap_x = np.maximum(
            boxes[:, None, 0] - boxes[None, :, 2], boxes[None, :, 0] - boxes[:, None, 2]
        )
        gap_y = np.maximum(
            boxes[:, None, 1] - boxes[None, :, 3], boxes[None, :, 1] - boxes[:, None, 3]
        )
        close = np.maximum(gap_x, gap_y) < buffer_px * PIXEL_SIZE_M
        join((members[a], members[b]) for a, b in zip(*np.nonzero(np.triu(close, 1)), strict=True))
    labels: dict[int, str] = {}
    for i, scene in sorted(enumerate(scenes), key=lambda item: tile_of(item[1]) or item[1]):
        labels.setdefault(find(i), tile_of(scene) or scene)
    return {scene: labels[find(i)] for i, scene in enumerate(scenes)}


def _box(chip: _Chip) -> tuple[float, float, float, float]:
    """(x_min, y_min, x_max, y_max) in metres of a chip (north-up grid)."""
    x0, y_top = chip.transform[2], chip.transform[5]
    extent = chip.size_px * abs(chip.transform[0])
    return x0, y_top - extent, x0 + extent, y_top


def assign_splits(sizes: Mapping[str, int], config: DataConfig, where: str) -> dict[str, str]:
    """Group -> split. Groups are shuffled with ``config.seed``; test, then val, take each group
    that brings their patch count closer to their fraction (at least one); train takes the rest.

    Raises:
        InputDataError: fewer groups than splits.
    """
    held_out = [("test", config.test_fraction)]
    if config.val_fraction > 0:
        held_out.append(("val", config.val_fraction))
    groups = sorted(sizes)
    if len(groups) <= len(held_out):
        raise InputDataError(
            where,
            f"{len(groups)} separate location(s) with usable patches ({', '.join(groups) or '-'}); "
            f"train, {' and '.join(name for name, _ in held_out)} need at least "
            f"{len(held_out) + 1}, since one location never spans two splits",
            "export more scenes (--n-images) from more states, or lower max_masked_fraction",
        )
    rng = np.random.default_rng(config.seed)
    pool = [groups[i] for i in rng.permutation(len(groups))]
    total = sum(sizes.values())
    split_of: dict[str, str] = {}
    for rank, (split, fraction) in enumerate(held_out):
        target, taken = fraction * total, 0
        reserve = len(held_out) - rank  # groups the later splits and train still need
        for group in list(pool):
            if len(pool) <= reserve:
                break
            if taken == 0 or abs(taken + sizes[group] - target) < abs(taken - target):
                split_of[group], taken = split, taken + sizes[group]
                pool.remove(group)
    split_of.update(dict.fromkeys(pool, "train"))
    return split_of


def _read_markers(prefix: str, scenes: Iterable[str]) -> dict[str, _Chip]:
    """The chip of every scene that has a completion marker with a grid (written by
    :mod:`s2ac.data.earthengine.export`)."""
    present = set(storage.list_uris(f"{prefix}/{MARKER_FOLDER}/", recursive=False))
    chips = {}
    for scene in scenes:
        uri = f"{prefix}/{MARKER_FOLDER}/{scene}.json"
        if uri not in present:
            continue
        marker = json.loads(storage.read_bytes(uri))
        if marker.get("crs") and marker.get("transform") and marker.get("size_px"):
            transform = tuple(float(v) for v in marker["transform"])
            chips[scene] = _Chip(marker["crs"], transform, int(marker["size_px"]),
                                 marker.get("stratum"))  # fmt: skip
    return chips


def _records(uri: str, local: str, patch_size: int) -> Iterable[dict[str, Any]]:
    """``iter_records`` with errors naming the exported URI, not a temporary download."""
    try:
        yield from iter_records(local, patch_size)
    except InputDataError as exc:
        raise InputDataError(uri, exc.problem, exc.fix) from None


def _scan(files: Sequence[str], local: Sequence[str], patch_size: int) -> list[_Patch]:
    """One :class:`_Patch` per exported record, in file order (arrays are not kept)."""
    patches: list[_Patch] = []
    position: dict[str, int] = {}
    for uri, path in track(list(zip(files, local, strict=True)), "Scanning the export"):
        scene = scene_of(uri)
        for index, record in enumerate(_records(uri, path, patch_size)):
            k = position[scene] = position.get(scene, -1) + 1
            patch_id = record["patch_id"] or f"{scene}/{k:04d}"
            bad = bad_pixel_fraction(record["toa"], record["sr"])
            patches.append(_Patch(patch_id, scene, uri, index, k, bad))
    seen: set[str] = set()
    for patch in patches:
        if patch.patch_id in seen:
            raise InputDataError(patch.export_file, f"patch_id {patch.patch_id!r} occurs twice")
        seen.add(patch.patch_id)
    return patches


def _window(patch: _Patch, chip: _Chip | None, count: int, size: int) -> dict[str, Any]:
    """``source``/``row``/``col`` of a patch when its place in the chip is certain."""
    per_side = chip.size_px // size if chip else 0
    if chip is None or per_side * size != chip.size_px or count != per_side**2:
        return {}  # Earth Engine dropped masked patches: positions of the rest are unknown
    r, c = divmod(patch.position, per_side)
    top, left = chip.transform[5] / chip.transform[4], chip.transform[2] / chip.transform[0]
    return {"source": chip.crs, "row": round(top) + r * size, "col": round(left) + c * size}


def _write_shards(
    staging: Path, files: Sequence[str], local: Sequence[str], kept: list[_Patch], size: int
) -> None:
    """Second pass over the export: each kept record into its split's shard (gzip)."""
    import tensorflow as tf

    where = {(p.export_file, p.export_record): p for p in kept}
    writers: dict[tuple[str, int], tf.io.TFRecordWriter] = {}
    try:
        for uri, path in track(list(zip(files, local, strict=True)), "Writing shards"):
            for index, record in enumerate(_records(uri, path, size)):
                patch = where.get((uri, index))
                if patch is None:
                    continue
                key = (patch.split, patch.shard)
                if key not in writers:
                    (staging / patch.split).mkdir(parents=True, exist_ok=True)
                    target = staging / patch.split / f"part-{patch.shard:05d}.tfrecord.gz"
                    writers[key] = tf.io.TFRecordWriter(str(target), options="GZIP")
                toa, sr = (np.nan_to_num(record[k], nan=0.0, posinf=0.0, neginf=0.0)
                           for k in ("toa", "sr"))  # fmt: skip
                writers[key].write(serialize_pair(toa, sr, patch.patch_id))
    finally:
        for writer in writers.values():
            writer.close()


def _deal_shards(kept: list[_Patch], rng: np.random.Generator) -> None:
    """Shard numbers: train in seeded random order, val/test in export order."""
    for split in SPLITS:
        members = [p for p in kept if p.split == split]
        order = rng.permutation(len(members)) if split == "train" else range(len(members))
        for rank, i in enumerate(order):
            members[int(i)].shard = rank // SHARD_SIZE


def _publish(staging: Path, out: str) -> None:
    """Local: rename the staging folder into place. gs://: old manifest off, files, manifest."""
    if not storage.is_gcs(out):
        target = Path(out)
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
        return
    storage.delete(f"{out}/{MANIFEST}", missing_ok=True)
    written = {str(p.relative_to(staging)) for p in staging.rglob("*.tfrecord.gz")}
    for relative in sorted(written):
        storage.upload(str(staging / relative), f"{out}/{relative}")
    for split in SPLITS:
        for uri in storage.list_uris(f"{out}/{split}/", recursive=False):
            if uri[len(out) + 1 :] not in written:
                storage.delete(uri, missing_ok=True)  # a shard of an earlier, larger dataset
    storage.upload(str(staging / MANIFEST), f"{out}/{MANIFEST}")


def _check_out(out: str, overwrite: bool) -> None:
    """Replace only an earlier dataset (or nothing): never a folder or prefix of other things."""
    if not storage.is_gcs(out):
        outputs.check_replaceable(
            Path(out), "s2ac dataset",
            lambda folder: "digest" in json.loads((folder / MANIFEST).read_text()), overwrite,
        )  # fmt: skip
        return
    if overwrite or storage.exists(f"{out}/{MANIFEST}"):
        return
    # A publish interrupted after it took the old manifest off leaves only shards: ours.
    ours = tuple(f"{out}/{split}/" for split in SPLITS)
    foreign = [u for u in storage.list_uris(f"{out}/", recursive=True) if not u.startswith(ours)]
    if foreign:
        raise InputDataError(
            out, f"holds objects that are no s2ac dataset (e.g. {foreign[0]}): refusing to "
            "write into it", "choose an empty prefix, or pass --overwrite",
        )  # fmt: skip


def assemble_dataset(
    export_prefix: str, out_dir: str | Path, config: DataConfig, *, overwrite: bool = False
) -> str:
    """Build a dataset in ``out_dir`` from the TFRecords in ``export_prefix``; return the
    manifest's path (both may be local or ``gs://``; see the module docstring for the steps).
    ``out_dir`` may be new, empty or an earlier dataset; anything else needs ``overwrite``.

    Raises:
        InputDataError (naming the prefix or file): no TFRecords, records off the schema or of
            another patch size, or too few separate locations for train, val and test.
    """
    prefix, out = str(export_prefix).rstrip("/"), str(out_dir).rstrip("/")
    _check_out(out, overwrite)
    size = config.patch_size
    try:
        files = list_tfrecords(prefix + "/")
    except InputDataError:
        tifs = [u for u in storage.list_uris(prefix + "/", recursive=False) if u.endswith(".tif")]
        hint = (
            "export with --format TFRecord" if tifs else "check the prefix, or run s2ac data export"
        )
        raise InputDataError(
            prefix, "no exported TFRecord files (*.tfrecord.gz) in it", hint
        ) from None
    with tempfile.TemporaryDirectory(prefix="s2ac-assemble-") as downloads:
        local = localize_files(files, cache_dir=downloads)
        scanned = _scan(files, local, size)
        if not scanned:
            raise InputDataError(prefix, f"the {len(files)} TFRecord files hold no records")
        kept = [p for p in scanned if p.bad_fraction <= config.max_nonfinite_fraction]
        scenes = sorted({p.scene for p in scanned})
        chips = _read_markers(prefix, scenes)
        if len(chips) < len(scenes):
            log.warning("%d of %d scenes have no marker with their grid in %s/%s/: grouped by "
                        "tile only", len(scenes) - len(chips), len(scenes), prefix,
                        MARKER_FOLDER)  # fmt: skip
        group_of = location_groups(scenes, chips, config.split_buffer_px)
        sizes: dict[str, int] = {}
        for patch in kept:
            patch.group = group_of[patch.scene]
            sizes[patch.group] = sizes.get(patch.group, 0) + 1
        split_of = assign_splits(sizes, config, prefix)
        for patch in kept:
            patch.split = split_of[patch.group]
        _deal_shards(kept, np.random.default_rng([config.seed, 1]))

        staging_root = None if storage.is_gcs(out) else Path(out).parent
        if staging_root is not None:
            staging_root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{Path(out).name}.tmp-", dir=staging_root))
        try:
            _write_shards(staging, files, local, kept, size)
            manifest = _manifest(prefix, files, scanned, kept, chips, staging, config)
            (staging / MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True))
            _publish(staging, out)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    counts = manifest["split"]["counts"]
    log.info("assembled %d of %d patches (%s; %d dropped) into %s", len(kept), len(scanned),
             ", ".join(f"{k} {v}" for k, v in counts.items()), len(scanned) - len(kept),
             out)  # fmt: skip
    return f"{out}/{MANIFEST}"


def _manifest(
    prefix: str, files: Sequence[str], scanned: list[_Patch], kept: list[_Patch],
    chips: Mapping[str, _Chip], staging: Path, config: DataConfig,
) -> dict[str, Any]:  # fmt: skip
    """The manifest: the keys downstream code reads (patch_size, split.counts, digest, files,
    samples) as in the synthetic dataset, plus the export's provenance and the filter's counts."""
    size = config.patch_size
    per_scene: dict[str, int] = {}
    for patch in scanned:
        per_scene[patch.scene] = per_scene.get(patch.scene, 0) + 1
    record_in_shard: dict[tuple[str, int], int] = {}
    samples = []
    for patch in kept:
        shard = (patch.split, patch.shard)
        record_in_shard[shard] = record_in_shard.get(shard, -1) + 1
        chip = chips.get(patch.scene)
        samples.append(
            {"patch_id": patch.patch_id, "split": patch.split, "scene": patch.scene}
            | {"group": patch.group, "stratum": chip.stratum if chip else None}
            | _window(patch, chip, per_scene[patch.scene], size)
            | {"file": f"{patch.split}/part-{patch.shard:05d}.tfrecord.gz"}
            | {
                "record": record_in_shard[shard],
                "export_file": patch.export_file[len(prefix) + 1 :],
            }
            | {"export_record": patch.export_record, "bad_fraction": round(patch.bad_fraction, 6)}
        )
    splits = [s for s in SPLITS if s != "val" or config.val_fraction > 0]
    counts = {s: sum(p.split == s for p in kept) for s in SPLITS}
    groups = {s: sorted({p.group for p in kept if p.split == s}) for s in splits}
    scenes = {s: len({p.scene for p in kept if p.split == s}) for s in splits}
    strata: dict[str, dict[str, int]] = {s: {} for s in splits}
    for sample in samples:
        by_stratum = strata[sample["split"]]
        name = sample["stratum"] or "unknown"
        by_stratum[name] = by_stratum.get(name, 0) + 1
    kept_scenes = {p.scene for p in kept}
    hashes = {
        str(p.relative_to(staging)): file_sha256(p) for p in sorted(staging.rglob("*.tfrecord.gz"))
    }
    export = {"name": "earthengine-export", "uri": prefix, "files": len(files)}
    export |= {"scenes": len(per_scene), "records": len(scanned)}
    return {
        "name": NAME,
        "s2ac_version": __version__,
        "seed": config.seed,
        "patch_size": size,
        "bands": list(BAND_NAMES),
        "units": "reflectance (float32, DN * 1e-4); masked or non-finite pixels 0",
        "schema": "TFRecord, s2ac.data.tfrecord (toa_B*, sr_B* float lists, patch_id)",
        "sources": [
            export,
            {"name": EE_L1C_COLLECTION, "level": "L1C", "role": "toa"},
            {"name": EE_L2A_COLLECTION, "level": "L2A", "role": "sr"},
            {"name": CLOUD_SCORE_PLUS, "role": "cloud mask (cs_cdf)"},
        ],
        "filter": {
            "bad_pixel": "a non-finite band, or all TOA or all SR bands 0 (masked)",
            "max_bad_fraction": config.max_nonfinite_fraction,
            "read": len(scanned),
            "kept": len(kept),
            "dropped": len(scanned) - len(kept),
            "bad_pixels_kept": round(sum(p.bad_fraction for p in kept) * size * size),
            "scenes_without_patches": sorted(set(per_scene) - kept_scenes),
        },
        "split": {
            "method": "by location: scenes of one MGRS tile or with chips within buffer_px "
            "form a group; groups shuffled (seed) and dealt to test, val, then train",
            "buffer_px": config.split_buffer_px,
            "fractions": {"test": config.test_fraction, "val": config.val_fraction},
            "counts": counts,
            "groups": groups,
            "scenes": scenes,
            "strata": {s: dict(sorted(v.items())) for s, v in strata.items()},
        },
        "files": hashes,
        "digest": digest_of(hashes),
        "samples": samples,
    }
