"""The TFRecord schema: writing, reading back, checking and listing files, on 32x32 patches."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from fakes.pairs import SIZE, make_pairs
from s2ac.data.input import make_dataset
from s2ac.data.tfrecord import (
    feature_keys,
    iter_records,
    list_tfrecords,
    parse_example,
    serialize_pair,
    write_tfrecord,
)
from s2ac.errors import InputDataError


def test_feature_keys_follow_band_order():
    assert feature_keys() == (
        "toa_B2", "toa_B3", "toa_B4", "toa_B8", "sr_B2", "sr_B3", "sr_B4", "sr_B8",
    )  # fmt: skip


@pytest.mark.parametrize("name", ["pairs.tfrecord", "pairs.tfrecord.gz"])
def test_round_trip_is_exact_and_keeps_patch_id(tmp_path: Path, name: str):
    pairs = make_pairs(3)
    pairs[2] = (pairs[2][0], pairs[2][1])  # a pair without id
    path = tmp_path / name
    assert write_tfrecord(path, pairs) == 3
    with path.open("rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    assert is_gzip == name.endswith(".gz")
    records = list(iter_records(path, SIZE))
    assert [r["patch_id"] for r in records] == ["scene/000", "scene/001", None]
    for record, (toa, sr, *_) in zip(records, pairs, strict=True):
        assert record["toa"].dtype == np.float32 and record["toa"].shape == (SIZE, SIZE, 4)
        np.testing.assert_array_equal(record["toa"], toa)
        np.testing.assert_array_equal(record["sr"], sr)


def test_same_input_gives_identical_bytes(tmp_path: Path):
    digests = set()
    for i in range(2):
        path = tmp_path / f"run{i}" / "pairs.tfrecord.gz"
        write_tfrecord(path, make_pairs(2, seed=7))
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        assert path.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0: no clock in the bytes
    assert len(digests) == 1


def test_failed_write_leaves_no_file_and_no_temp(tmp_path: Path):
    def pairs():
        yield from make_pairs(2)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        write_tfrecord(tmp_path / "pairs.tfrecord.gz", pairs())
    assert list(tmp_path.iterdir()) == []


def test_shape_errors(tmp_path: Path):
    toa = np.zeros((SIZE, SIZE, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(size, size, 4\)"):
        serialize_pair(toa[..., :3], toa[..., :3])
    with pytest.raises(ValueError, match="must match"):
        serialize_pair(toa, np.zeros((16, 16, 4), np.float32))
    with pytest.raises(ValueError, match="float reflectance"):
        serialize_pair(toa.astype(np.uint16), toa.astype(np.uint16))
    path = tmp_path / "bad.tfrecord"
    with pytest.raises(InputDataError, match=r"bad\.tfrecord: record 1: toa has shape"):
        write_tfrecord(path, [(toa, toa), (toa[:, :16], toa[:, :16])])
    mixed = [(toa, toa), (toa[:16, :16], toa[:16, :16])]
    with pytest.raises(InputDataError, match="record 1 has shape"):
        write_tfrecord(path, mixed)
    assert list(tmp_path.iterdir()) == []


def test_off_schema_files_give_clear_errors(tmp_path: Path):
    import tensorflow as tf

    path = tmp_path / "pairs.tfrecord"
    write_tfrecord(path, make_pairs(1))
    with pytest.raises(
        InputDataError,
        match=r"1024 values, not 16x16=256 \(it holds 32x32 patches: pass patch_size=32\)",
    ):
        list(iter_records(path, 16))
    other = tmp_path / "other.tfrecord"
    example = tf.train.Example(
        features=tf.train.Features(
            feature={"B2": tf.train.Feature(float_list=tf.train.FloatList(value=[0.0] * 4))}
        )
    )
    with tf.io.TFRecordWriter(str(other)) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(InputDataError, match=r"other\.tfrecord: records lack .*toa_B2.*found: B2"):
        make_dataset([str(other)], patch_size=2, training=False)
    with pytest.raises(InputDataError, match="lack"):
        parse_example(tf.constant(example.SerializeToString()), 2)
    plain_named_gz = tmp_path / "plain.tfrecord.gz"
    plain_named_gz.write_bytes(path.read_bytes())
    with pytest.raises(InputDataError, match="not readable as a GZIP"):
        list(iter_records(plain_named_gz, SIZE))


def test_truncated_file_names_the_damaged_record(tmp_path: Path):
    path = tmp_path / "pairs.tfrecord"
    write_tfrecord(path, make_pairs(3))
    path.write_bytes(path.read_bytes()[:-100])
    records = iter_records(path, SIZE)
    assert next(records)["patch_id"] == "scene/000"
    with pytest.raises(InputDataError, match=r"pairs\.tfrecord: record 2: "):
        list(records)


def test_list_tfrecords(tmp_path: Path):
    with pytest.raises(InputDataError, match="no TFRecord files") as info:
        list_tfrecords(tmp_path)
    assert str(tmp_path) in str(info.value)
    for name in ["b.tfrecord.gz", "a.tfrecord", "notes.json", "sub/c.tfrecord"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    expected = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord.gz")]
    assert list_tfrecords(tmp_path) == expected
    assert list_tfrecords(tmp_path / "a.tfrecord") == [str(tmp_path / "a.tfrecord")]
