"""Dataset statistics: read a dataset into one table row per patch, the input of validation.

A module of its own because reading is separate from judging: :mod:`s2ac.data.validation` runs
its Great Expectations suite over this table, and the table is useful by itself
(:func:`patch_statistics`).

Each row holds a patch's shape, band count, share of finite values, per-band means, min/max, the
blue-band TOA-SR excess, a content hash and, from ``manifest.json``, the source scene and window
used to detect train/test leakage (:data:`STAT_COLUMNS`).

The TFRecord reader here is deliberately tolerant: a record of the wrong length or with a missing
band becomes a table row whose shape columns fail the suite, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd

from s2ac.bands import BAND_NAMES
from s2ac.console import track
from s2ac.data.tfrecord import compression_type
from s2ac.errors import InputDataError, ObjectNotFoundError
from s2ac.io import storage
from s2ac.io.storage import localize_files

SPLITS = ("train", "val", "test", "ood")
#: Splits whose windows must keep ``buffer_px`` away from every train window of the same source.
HELD_OUT_SPLITS = ("val", "test", "ood")
#: TOA blue above this is cloud (or snow / saturated bright sand): a cloud-mask leak proxy.
BRIGHT_TOA_BLUE = 0.35

STAT_COLUMNS = (
    ["patch_id", "split", "file", "record", "height", "width", "n_bands"]
    + ["toa_finite_share", "sr_finite_share", "toa_min", "toa_max", "sr_min", "sr_max"]
    + [f"{kind}_mean_{band}" for kind in ("toa", "sr") for band in BAND_NAMES]
    + ["blue_excess", "nir_excess", "bright_share", "content_hash", "problem"]
    + ["source", "row", "col", "in_manifest", "leak_window", "leak_duplicate"]
)


def _tfrecord_payloads(uri: str) -> Iterator[bytes]:
    """Serialized records of a TFRecord file (GZIP if named .gz), read with TensorFlow's reader
    (CRCs checked) so a damaged file is reported with the record index, never half-parsed."""
    import tensorflow as tf

    (local,) = localize_files([uri])
    index = 0
    try:
        for record in tf.data.TFRecordDataset(local, compression_type=compression_type(local)):
            yield record.numpy()
            index += 1
    except tf.errors.OpError as exc:
        raise InputDataError(
            uri, f"record {index}: corrupt or truncated TFRecord ({exc.message.splitlines()[0]})"
        ) from exc


def _shape(n_values: int, expected_size: int | None) -> tuple[int, int]:
    """(height, width) of a flat row-major band: square if it can be, else rows of the expected
    width (a 32x16 patch of a 32 px dataset reads as height 16), else one row."""
    side = math.isqrt(n_values)
    if side * side == n_values:
        return side, side
    if expected_size and n_values % expected_size == 0:
        return n_values // expected_size, expected_size
    return 1, n_values


def _parse_example(payload: bytes) -> tuple[str | None, dict[str, np.ndarray]]:
    """patch_id and the float bands (``toa_B2`` ...) present in a serialized tf.train.Example."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        features = tf.train.Example.FromString(payload).features.feature
    except DecodeError:
        return None, {}
    bands = {}
    for key in (f"{kind}_{band}" for kind in ("toa", "sr") for band in BAND_NAMES):
        if key in features and features[key].WhichOneof("kind") == "float_list":
            values = features[key].float_list.value
            bands[key] = np.fromiter(values, np.float32, count=len(values))
    ids = features["patch_id"].bytes_list.value if "patch_id" in features else []
    return (ids[0].decode("utf-8", "replace") if ids else None), bands


def _record_statistics(payload: bytes, expected_size: int | None) -> dict[str, Any]:
    patch_id, bands = _parse_example(payload)
    nan, empty = float("nan"), np.empty(0, np.float32)
    lengths = sorted({values.size for values in bands.values()})
    missing = [f"{k}_{b}" for k in ("toa", "sr") for b in BAND_NAMES if f"{k}_{b}" not in bands]
    row: dict[str, Any] = {
        "patch_id": patch_id,
        "n_bands": sum(f"toa_{b}" in bands and f"sr_{b}" in bands for b in BAND_NAMES),
        "problem": "no float bands (not a tf.train.Example?)" if not bands
        else f"bands differ in length: {lengths} values" if len(lengths) > 1
        else f"missing {', '.join(missing)}" if missing else "",
    }  # fmt: skip
    row["height"], row["width"] = _shape(lengths[0], expected_size) if len(lengths) == 1 else (0, 0)
    for kind in ("toa", "sr"):
        values = np.concatenate([bands.get(f"{kind}_{band}", empty) for band in BAND_NAMES])
        finite = values[np.isfinite(values)]
        row[f"{kind}_finite_share"] = finite.size / max(values.size, 1)
        row[f"{kind}_min"] = float(finite.min()) if finite.size else nan
        row[f"{kind}_max"] = float(finite.max()) if finite.size else nan
        for band in BAND_NAMES:
            band_values = bands.get(f"{kind}_{band}", empty)
            band_values = band_values[np.isfinite(band_values)]
            row[f"{kind}_mean_{band}"] = (
                float(band_values.mean(dtype=np.float64)) if band_values.size else nan
            )
    digest = hashlib.sha256()
    for key in sorted(bands):
        digest.update(key.encode() + bands[key].tobytes())
    row["content_hash"] = digest.hexdigest()
    row["blue_excess"] = row["toa_mean_B2"] - row["sr_mean_B2"]
    row["nir_excess"] = row["toa_mean_B8"] - row["sr_mean_B8"]
    toa_blue = bands.get("toa_B2", empty)
    row["bright_share"] = float(np.mean(toa_blue > BRIGHT_TOA_BLUE)) if toa_blue.size else nan
    return row


def _load_manifest(base: str) -> dict[str, Any]:
    uri = f"{base}/manifest.json"
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except ObjectNotFoundError:
        raise InputDataError(uri, "manifest.json not found", "regenerate the dataset") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(uri, f"not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("samples"), list):
        raise InputDataError(uri, "has no 'samples' list (patch_id, split, source, row, col)")
    return manifest


def _mark_leaks(table: pd.DataFrame, size: int, buffer_px: int) -> None:
    """Held-out windows closer than ``buffer_px`` (Chebyshev gap between window edges) to a train
    window of the same source leak; so does identical content in two different splits."""
    table["leak_window"] = False
    known = table["in_manifest"].astype(bool) & table["row"].notna() & table["col"].notna()
    for _source, group in table[known].groupby("source"):
        train = group[group["split"] == "train"][["row", "col"]].to_numpy(dtype=np.int64)
        if not train.size:
            continue
        for index, patch in group[group["split"].isin(HELD_OUT_SPLITS)].iterrows():
            offsets = np.abs(train - np.array([patch["row"], patch["col"]], dtype=np.int64))
            table.loc[index, "leak_window"] = bool((offsets.max(axis=1) - size < buffer_px).any())
    splits_per_hash = table.groupby("content_hash")["split"].transform("nunique")
    table["leak_duplicate"] = splits_per_hash > 1


def read_dataset(
    dataset_dir: str | os.PathLike[str], patch_size: int | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    base = os.fspath(dataset_dir).rstrip("/")
    manifest = _load_manifest(base)
    size = patch_size or manifest.get("patch_size")
    files = [
        (split, uri)
        for split in SPLITS
        for uri in storage.list_uris(f"{base}/{split}/", recursive=False)
        if uri.endswith((".tfrecord.gz", ".tfrecord"))
    ]
    if not files:
        raise InputDataError(
            base, "no *.tfrecord.gz under train/, val/ or test/", "is this a dataset directory?"
        )
    rows = []
    for split, uri in track(files, "Reading patches"):
        name = uri.rsplit("/", 1)[-1]
        for index, payload in enumerate(_tfrecord_payloads(uri)):
            row = _record_statistics(payload, size)
            row["patch_id"] = row["patch_id"] or f"{split}/{name}#{index}"
            rows.append({**row, "split": split, "file": f"{split}/{name}", "record": index})
    if not rows:
        raise InputDataError(base, "the TFRecord files hold no records")
    table = pd.DataFrame(rows).reindex(columns=STAT_COLUMNS)
    samples = {s.get("patch_id"): s for s in manifest["samples"] if isinstance(s, dict)}
    listed = [samples.get(pid) for pid in table["patch_id"]]
    table["in_manifest"] = [
        s is not None and s.get("split") == split
        for s, split in zip(listed, table["split"], strict=True)
    ]
    table["source"] = [s.get("source") if s else None for s in listed]
    for key in ("row", "col"):
        values = pd.to_numeric([s.get(key) if s else None for s in listed], errors="coerce")
        table[key] = pd.Series(values, index=table.index).round().astype("Int64")
    window = int(size or table["height"].mode().iloc[0])
    _mark_leaks(table, window, int((manifest.get("split") or {}).get("buffer_px", 0)))
    return table, manifest


def patch_statistics(
    dataset_dir: str | os.PathLike[str], *, patch_size: int | None = None
) -> pd.DataFrame:
    """One row per patch of ``DIR/{train,val,test}/*.tfrecord.gz`` (columns :data:`STAT_COLUMNS`).

    Raises:
        InputDataError: no manifest, no TFRecord files, or a file is not a readable TFRecord.
    """
    return read_dataset(dataset_dir, patch_size)[0]
