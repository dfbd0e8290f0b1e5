"""The TFRecord schema of patch pairs: writing, checking, parsing and listing the files.

A module of its own because the schema is a public contract shared by every producer (the
synthetic generator, the Earth Engine export, dataset assembly) and every reader (the input
pipeline, validation, evaluation); tiling and the tf.data pipeline build on it.

Schema (the Earth Engine export writes the same)
    One ``tf.train.Example`` per patch pair of ``size x size`` pixels, with these features:

    ==========================  ==========  =====================================================
    key                         type        content
    ==========================  ==========  =====================================================
    ``toa_B2`` ... ``toa_B8``   float_list  top-of-atmosphere reflectance (L1C), one feature per
                                            band of :data:`s2ac.bands.BAND_NAMES`, ``size*size``
                                            float32 values, row-major
    ``sr_B2`` ... ``sr_B8``     float_list  surface reflectance (L2A), same layout
    ``patch_id``                bytes_list  optional, one UTF-8 string (e.g. ``scene/r0128_c0256``)
    ==========================  ==========  =====================================================

    Reflectance is DN * 1e-4 (not DN). Other features are ignored, so an export may carry extra
    bands. This is what ``Export.image.toCloudStorage(fileFormat="TFRecord",
    formatOptions={"patchDimensions": [size, size]})`` writes for an image whose float bands are
    named like the keys. Files whose name ends with ``.gz`` are GZIP-compressed (Earth Engine
    writes ``*.tfrecord.gz``); any other name means uncompressed.

TensorFlow is imported inside the functions that need it: it takes seconds to import, and
listing files must stay cheap for the CLI.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from s2ac.bands import BAND_NAMES, N_BANDS
from s2ac.errors import InputDataError, ObjectNotFoundError
from s2ac.io import storage

if TYPE_CHECKING:
    import tensorflow as tf

#: Feature keys of the TFRecord schema (see module docstring), in band order.
TOA_KEYS: tuple[str, ...] = tuple(f"toa_{band}" for band in BAND_NAMES)
SR_KEYS: tuple[str, ...] = tuple(f"sr_{band}" for band in BAND_NAMES)
PATCH_ID_KEY = "patch_id"
TFRECORD_SUFFIXES = (".tfrecord", ".tfrecord.gz")


def feature_keys() -> tuple[str, ...]:
    """The required float features of every record: TOA bands, then SR bands."""
    return TOA_KEYS + SR_KEYS


# --- TFRecord writing -------------------------------------------------------------------------


def compression_type(path: str | os.PathLike[str]) -> str:
    """``"GZIP"`` for names ending in ``.gz`` (Earth Engine's ``.tfrecord.gz``), else ``""``."""
    return "GZIP" if os.fspath(path).endswith(".gz") else ""


def _as_patch(array: Any, name: str) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim != 3 or array.shape[-1] != N_BANDS or array.shape[0] != array.shape[1]:
        raise ValueError(
            f"{name} has shape {array.shape}; expected a square (size, size, {N_BANDS}) patch "
            f"with bands {', '.join(BAND_NAMES)} last"
        )
    if not np.issubdtype(array.dtype, np.floating):
        raise ValueError(
            f"{name} has dtype {array.dtype}; expected float reflectance (DN * 1e-4, see "
            "s2ac.bands.dn_to_reflectance)"
        )
    return array.astype(np.float32, copy=False)


def serialize_pair(toa: np.ndarray, sr: np.ndarray, patch_id: str | bytes | None = None) -> bytes:
    """One ``tf.train.Example`` of the schema, serialized deterministically (sorted keys), so the
    same arrays always give the same bytes and a seeded dataset is bit-identical."""
    import tensorflow as tf

    toa, sr = _as_patch(toa, "toa"), _as_patch(sr, "sr")
    if toa.shape != sr.shape:
        raise ValueError(f"toa has shape {toa.shape} but sr has shape {sr.shape}; they must match")
    feature: dict[str, tf.train.Feature] = {}
    for keys, array in ((TOA_KEYS, toa), (SR_KEYS, sr)):
        for index, key in enumerate(keys):
            values = array[..., index].ravel().tolist()  # row-major; tolist() is ~6x faster
            feature[key] = tf.train.Feature(float_list=tf.train.FloatList(value=values))
    if patch_id is not None:
        raw = patch_id.encode("utf-8") if isinstance(patch_id, str) else bytes(patch_id)
        feature[PATCH_ID_KEY] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[raw]))
    example = tf.train.Example(features=tf.train.Features(feature=feature))
    return example.SerializeToString(deterministic=True)


def write_tfrecord(path: str | os.PathLike[str], pairs: Iterable[tuple[Any, ...]]) -> int:
    """Write ``(toa, sr[, patch_id])`` pairs to ``path`` (local or gs://); returns the count.

    Atomic: records go to a temporary name beside the target that is renamed at the end and
    removed on any error, so a crashed run never leaves a file that looks complete. All patches
    of one file must have the same size. ``gs://`` targets are written locally, then uploaded.
    """
    import tensorflow as tf

    text = os.fspath(path)
    if storage.is_gcs(text):
        with tempfile.TemporaryDirectory() as tmp:
            local = os.path.join(tmp, text.rsplit("/", 1)[-1])
            count = write_tfrecord(local, pairs)
            storage.upload(local, text)
        return count
    target = Path(text)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
    count, first_shape = 0, None
    try:
        with tf.io.TFRecordWriter(str(tmp_path), options=compression_type(text)) as writer:
            for toa, sr, *patch_id in pairs:
                try:
                    record = serialize_pair(toa, sr, *patch_id)
                except ValueError as exc:
                    raise InputDataError(text, f"record {count}: {exc}") from None
                first_shape = first_shape or np.shape(toa)
                if np.shape(toa) != first_shape:
                    problem = f"record {count} has shape {np.shape(toa)}, record 0 {first_shape}"
                    raise InputDataError(text, problem, "write one patch size per file")
                writer.write(record)
                count += 1
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise
    return count


# --- TFRecord reading -------------------------------------------------------------------------


def _feature_spec(patch_size: int) -> dict[str, Any]:
    import tensorflow as tf

    spec: dict[str, Any] = {
        key: tf.io.FixedLenFeature([patch_size * patch_size], tf.float32) for key in feature_keys()
    }
    spec[PATCH_ID_KEY] = tf.io.FixedLenFeature([], tf.string, default_value="")
    return spec


def check_example(serialized: bytes, patch_size: int, where: str = "TFRecord") -> None:
    """Raise :class:`InputDataError` naming ``where`` unless one record fits the schema.

    Inside ``dataset.map`` TensorFlow can only fail with a terse graph error at iteration time,
    so readers check the first record of every file with this before building the pipeline.
    """
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        features = tf.train.Example.FromString(serialized).features.feature
    except DecodeError:
        raise InputDataError(where, "records are not tf.train.Example protos") from None
    missing = [key for key in feature_keys() if key not in features]
    if missing:
        found = ", ".join(sorted(features)) or "none"
        raise InputDataError(
            where,
            f"records lack the feature(s) {', '.join(missing)} (found: {found})",
            "name the exported bands toa_B2..toa_B8 and sr_B2..sr_B8, see s2ac.data.tfrecord",
        )
    expected = patch_size * patch_size
    for key in feature_keys():
        kind = features[key].WhichOneof("kind")
        if kind != "float_list":
            raise InputDataError(
                where, f"feature {key} is a {kind}, expected a float_list of reflectance",
                "convert the bands to float reflectance (DN * 1e-4) before exporting",
            )  # fmt: skip
        count = len(features[key].float_list.value)
        if count != expected:
            side = math.isqrt(count)
            fix = (
                f"it holds {side}x{side} patches: pass patch_size={side}"
                if side**2 == count
                else None
            )
            problem = f"feature {key} has {count} values, not {patch_size}x{patch_size}={expected}"
            raise InputDataError(where, problem, fix)


def check_tfrecord(path: str, patch_size: int) -> None:
    """Fail early and clearly on a missing, unreadable or off-schema local TFRecord file."""
    import tensorflow as tf

    if not os.path.isfile(path):
        raise ObjectNotFoundError(f"{path}: file not found")
    dataset = tf.data.TFRecordDataset(path, compression_type=compression_type(path))
    try:
        first = next(iter(dataset.take(1)), None)
    except tf.errors.OpError:
        how = "GZIP-compressed" if compression_type(path) else "uncompressed"
        raise InputDataError(
            path, f"not readable as a {how} TFRecord file",
            "files named *.gz must be GZIP-compressed, all others uncompressed",
        ) from None  # fmt: skip
    if first is not None:
        check_example(first.numpy(), patch_size, where=path)


def parse_record(serialized: tf.Tensor, patch_size: int) -> dict[str, tf.Tensor]:
    """One record as ``{"toa", "sr", "patch_id"}`` tensors (a graph function)."""
    import tensorflow as tf

    parsed = tf.io.parse_single_example(serialized, _feature_spec(patch_size))

    def stack(keys: tuple[str, ...]) -> tf.Tensor:
        bands = [tf.reshape(parsed[key], (patch_size, patch_size)) for key in keys]
        return tf.stack(bands, axis=-1)

    return {"toa": stack(TOA_KEYS), "sr": stack(SR_KEYS), "patch_id": parsed[PATCH_ID_KEY]}


def parse_example(serialized: tf.Tensor, patch_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """Parse one serialized record into ``(toa, sr)``, each ``(size, size, 4)`` float32.

    A graph function for ``dataset.map``. Called eagerly it checks the schema first and raises
    :class:`InputDataError`; in a graph a missing key fails with TensorFlow's
    ``Feature: toa_B2 ... is required but could not be found`` (hence :func:`check_tfrecord`).
    """
    import tensorflow as tf

    if tf.executing_eagerly():
        check_example(bytes(serialized.numpy()), patch_size, where="serialized example")
    parsed = parse_record(serialized, patch_size)
    return parsed["toa"], parsed["sr"]


def iter_records(
    path_or_uri: str | os.PathLike[str], patch_size: int, *, cache_dir: str | None = None
) -> Iterator[dict[str, Any]]:
    """Yield ``{"toa", "sr", "patch_id"}`` (numpy float32 ``(size, size, 4)``, str or None) per
    record, in file order. For validation and evaluation, which need numpy, not batches.

    ``gs://`` files are downloaded first (into ``cache_dir``, or a temporary folder). A damaged
    record raises :class:`InputDataError` naming the file and the record index.
    """
    import tensorflow as tf

    text = os.fspath(path_or_uri)
    with contextlib.ExitStack() as stack:
        local = text
        if storage.is_gcs(text):
            folder = cache_dir or stack.enter_context(tempfile.TemporaryDirectory())
            local = storage.localize_files([text], cache_dir=folder)[0]
        check_tfrecord(local, patch_size)
        parse = functools.partial(parse_record, patch_size=patch_size)
        records = tf.data.TFRecordDataset(local, compression_type(local)).map(parse)
        index = -1
        try:
            for index, record in enumerate(records.as_numpy_iterator()):  # noqa: B007
                raw = record["patch_id"]
                yield {"toa": record["toa"], "sr": record["sr"], "patch_id": raw.decode() or None}
        except tf.errors.OpError as exc:  # a damaged record after the first
            problem = (exc.message or type(exc).__name__).splitlines()[0]
            raise InputDataError(text, f"record {index + 1}: {problem}") from None


# --- files ------------------------------------------------------------------------------------


def is_tfrecord_name(name: str) -> bool:
    """True for ``*.tfrecord`` and ``*.tfrecord.gz``."""
    return name.endswith(TFRECORD_SUFFIXES)


def list_tfrecords(dir_or_uri: str | os.PathLike[str]) -> list[str]:
    """Sorted TFRecord files directly inside a local folder or ``gs://`` prefix (not in
    subfolders, which usually hold other splits). A path naming one file gives just that file."""
    text = os.fspath(dir_or_uri)
    if is_tfrecord_name(text) and storage.exists(text):
        return [text]
    folder = text if text.endswith(("/", os.sep)) else text + "/"
    found = [uri for uri in storage.list_uris(folder, recursive=False) if is_tfrecord_name(uri)]
    if not found:
        raise InputDataError(
            text, f"no TFRecord files ({', '.join('*' + s for s in TFRECORD_SUFFIXES)}) under it",
            "check the path, or export/generate the dataset first",
        )  # fmt: skip
    return found
