"""The tf.data input pipeline: TFRecord files (local or ``gs://``) to batches for training.

A module of its own because it is the one place that decides how records become batches
(interleaving, shuffling, augmentation, caching); the record format it reads is
:mod:`s2ac.data.tfrecord`.

:func:`make_dataset` turns a list of files into batches of ``(toa, sr)``, each
``(batch, size, size, 4)`` float32. ``gs://`` files are first downloaded into a local cache
(:func:`s2ac.io.storage.localize_files`), because ``tf.io.gfile`` cannot talk to
the Cloud Storage emulator and the same code must run against both.

TensorFlow is imported inside the functions that need it: it takes seconds to import, and
listing or fetching files must stay cheap for the CLI.
"""

from __future__ import annotations

import functools
import itertools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2ac.bands import N_BANDS
from s2ac.data.tfrecord import check_tfrecord, compression_type
from s2ac.errors import InputDataError
from s2ac.io import storage

if TYPE_CHECKING:
    import tensorflow as tf

# Fixed (not AUTOTUNE) so the interleaved read order, and with it a seeded run, does not depend
# on how many cores the machine has.
_PARALLEL_READS = 4


def _augment_pair(pair: tuple[tf.Tensor, ...], seed: tf.Tensor) -> tuple[tf.Tensor, ...]:
    """Random flips and 90 degree rotations, the same for input and target: they are stacked
    along channels and transformed once, so a pixel of TOA always stays over its SR pixel.
    A third element (the sample's geometry) passes unchanged: the Lambertian atmosphere does
    not turn with the patch."""
    import tensorflow as tf

    toa, sr, *rest = pair
    both = tf.concat([toa, sr], axis=-1)
    flip_lr, flip_ud, rotate = tf.unstack(tf.random.split(seed, num=3))
    both = tf.image.stateless_random_flip_left_right(both, flip_lr)
    both = tf.image.stateless_random_flip_up_down(both, flip_ud)
    turns = tf.random.stateless_uniform([], rotate, minval=0, maxval=4, dtype=tf.int32)
    # rot90 by a tensor loses the static shape; patches are square, so it is unchanged.
    both = tf.ensure_shape(tf.image.rot90(both, turns), both.shape)
    return (both[..., :N_BANDS], both[..., N_BANDS:], *rest)


def make_dataset(
    files: Sequence[str],
    *,
    patch_size: int = 256,
    batch_size: int = 2,
    training: bool,
    shuffle_buffer: int = 1000,
    seed: int = 0,
    cache: bool | str = True,
    augment: bool | None = None,
    cache_dir: str | os.PathLike[str] | None = None,
    geometry: Mapping[str, Sequence[float]] | None = None,
) -> tf.data.Dataset:
    """Batches of ``(toa, sr)``, each ``(batch, size, size, 4)`` float32, from TFRecord files.

    With ``geometry`` (patch id -> the :data:`s2ac.physics.tf_lut.GEOMETRY` values, e.g. from
    :func:`manifest_geometry`) the batches are ``({"toa", "geometry"}, sr)``, what the
    physics-informed generator takes; a record whose patch id has no geometry stops the
    iteration with an error naming it.

    Training: files are read interleaved, records shuffled (seeded, reshuffled every epoch),
    augmented (``augment`` defaults to ``training``) and the last partial batch is dropped.
    Evaluation: records come in file order, all of them, unchanged, matching
    :func:`s2ac.data.tfrecord.iter_records`. Both are deterministic for a given ``seed``.

    ``cache``: True keeps parsed records in memory after the first epoch, a string caches them
    in files with that prefix (TensorFlow reuses an existing cache as is), False re-reads.
    ``gs://`` files are downloaded to ``cache_dir`` (default
    :func:`s2ac.io.storage.default_cache_dir`).
    Every file's first record is checked against the schema before the pipeline is built.
    """
    import tensorflow as tf

    if isinstance(files, str | os.PathLike):
        files = [os.fspath(files)]
    if not files:
        raise InputDataError("make_dataset", "no TFRecord files given", "see list_tfrecords()")
    augment = training if augment is None else augment
    local = storage.localize_files(files, cache_dir=cache_dir)
    for path in local:
        check_tfrecord(path, patch_size)

    # A TFRecordDataset takes one compression type: one per run of equal types, in file order.
    parts = []
    for compression, run in itertools.groupby(local, key=compression_type):
        paths = list(run)
        reads = min(len(paths), _PARALLEL_READS) if training else None  # eval: file order
        parts.append(tf.data.TFRecordDataset(paths, compression, num_parallel_reads=reads))
    dataset = functools.reduce(lambda a, b: a.concatenate(b), parts)

    parse = functools.partial(_parse_finite, patch_size=patch_size)
    if geometry is not None:
        parse = _with_geometry(patch_size, geometry)
    dataset = dataset.map(parse, num_parallel_calls=tf.data.AUTOTUNE)
    if isinstance(cache, str):
        Path(cache).parent.mkdir(parents=True, exist_ok=True)
        dataset = dataset.cache(cache)
    elif cache:
        dataset = dataset.cache()
    if training:
        dataset = dataset.shuffle(shuffle_buffer, seed=seed, reshuffle_each_iteration=True)
    if augment:
        # Per-element seeds from a seeded stream: stateless ops are safe in a parallel map and
        # give the same augmentations for the same seed; new ones every epoch.
        seeds = tf.data.Dataset.random(seed=seed + 1, rerandomize_each_iteration=True).batch(2)
        dataset = tf.data.Dataset.zip((dataset, seeds))
        dataset = dataset.map(_augment_pair, num_parallel_calls=tf.data.AUTOTUNE)
    if geometry is not None:
        dataset = dataset.map(lambda toa, sr, g: ({"toa": toa, "geometry": g}, sr))
    dataset = dataset.batch(batch_size, drop_remainder=training)
    dataset = dataset.prefetch(tf.data.AUTOTUNE)
    options = tf.data.Options()
    options.deterministic = True  # parallel map/interleave keep their order: seed -> same run
    return dataset.with_options(options)


#: Start of the error a record with NaN or inf raises while training reads it.
NON_FINITE = "non-finite value (NaN or inf) in the record of patch"


def _assert_finite(record: dict[str, Any]) -> None:
    """Fail on a record with a NaN or inf, naming its patch id. Not masked out of the loss: a
    non-finite pixel in a reflectance product is a broken file, and validation
    (``max_nonfinite_fraction``) is where a dataset is allowed to have some; training data must
    be clean (measured before: NaN in 0.46 % of train pixels made every loss NaN)."""
    import tensorflow as tf

    finite = tf.reduce_all(tf.math.is_finite(record["toa"])) & tf.reduce_all(
        tf.math.is_finite(record["sr"])
    )
    tf.debugging.Assert(finite, [NON_FINITE, record["patch_id"]])


def _parse_finite(serialized: tf.Tensor, patch_size: int) -> tuple[tf.Tensor, tf.Tensor]:
    """``(toa, sr)`` of a record checked by :func:`_assert_finite`."""
    from s2ac.data.tfrecord import parse_record

    record = parse_record(serialized, patch_size)
    _assert_finite(record)
    return record["toa"], record["sr"]


def _with_geometry(patch_size: int, geometry: Mapping[str, Sequence[float]]) -> Any:
    """A parse function ``record -> (toa, sr, geometry)``: the geometry looked up by patch id."""
    import numpy as np
    import tensorflow as tf

    from s2ac.data.tfrecord import parse_record

    ids = list(geometry)
    rows = tf.constant(np.asarray([geometry[i] for i in ids], dtype=np.float32).reshape(-1, 6))
    index = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(ids, tf.string),
                                            tf.range(len(ids), dtype=tf.int64)),
        default_value=-1,
    )  # fmt: skip

    def parse(serialized: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
        record = parse_record(serialized, patch_size)
        _assert_finite(record)
        row = index.lookup(record["patch_id"])
        tf.debugging.assert_non_negative(
            row, message="a record's patch_id has no geometry in the manifest"
        )
        return record["toa"], record["sr"], tf.gather(rows, tf.maximum(row, 0))

    return parse


def manifest_geometry(manifest: Mapping[str, Any]) -> dict[str, tuple[float, ...]]:
    """Patch id -> acquisition geometry of every sample whose manifest entry has an atmosphere
    (the embedded dataset's do); empty for datasets without one."""
    from s2ac.physics.lut import Atmosphere
    from s2ac.physics.tf_lut import geometry_vector

    found = {}
    for sample in manifest.get("samples") or []:
        if isinstance(sample, dict) and isinstance(sample.get("atmosphere"), dict):
            found[str(sample["patch_id"])] = geometry_vector(Atmosphere(**sample["atmosphere"]))
    return found
