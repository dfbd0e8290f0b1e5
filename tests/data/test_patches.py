"""Tiling, the TFRecord schema and the tf.data pipeline, on tiny patches (32x32 unless noted)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

from s2ac.data import patches as P
from s2ac.errors import InputDataError

SIZE = 32


def make_pairs(n: int, size: int = SIZE, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray, str]]:
    """Random TOA patches with sr = toa * 2 + 0.1 (float32), so a pair's relation is checkable."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        toa = rng.random((size, size, 4), dtype=np.float32)
        pairs.append((toa, toa * 2 + 0.1, f"scene/{i:03d}"))
    return pairs


def dihedral(patch: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of a (H, W, C) patch."""
    return [np.rot90(p, k, axes=(0, 1)) for p in (patch, patch[:, ::-1]) for k in range(4)]


# --- tiling -----------------------------------------------------------------------------------


def test_origins_cover_a_70x50_image_with_full_patches_inside():
    origins = P.patch_origins(70, 50, 32, 32)
    # rows 0, 32, then 38 (shifted back inside); cols 0, then 18
    assert origins == [(0, 0), (0, 18), (32, 0), (32, 18), (38, 0), (38, 18)]
    covered = np.zeros((70, 50), dtype=int)
    for row, col in origins:
        assert 0 <= row <= 70 - 32 and 0 <= col <= 50 - 32
        covered[row : row + 32, col : col + 32] += 1
    assert covered.min() >= 1


def test_origins_with_overlap_and_exact_fit():
    assert P.patch_origins(64, 64, 32, 32) == [(0, 0), (0, 32), (32, 0), (32, 32)]
    assert [r for r, _ in P.patch_origins(64, 32, 32, 16)] == [0, 16, 32]
    with pytest.raises(ValueError, match="stride"):
        P.patch_origins(64, 64, 32, 33)


def test_extract_patches_matches_slices():
    image = np.arange(70 * 50 * 4, dtype=np.float32).reshape(70, 50, 4)
    patches, origins = P.extract_patches(image, 32, 32)
    assert patches.shape == (6, 32, 32, 4) and patches.dtype == np.float32
    for patch, (row, col) in zip(patches, origins, strict=True):
        np.testing.assert_array_equal(patch, image[row : row + 32, col : col + 32])
    assert not np.isnan(patches).any()


def test_small_image_is_padded_with_nan_and_nodata_becomes_nan():
    image = np.ones((20, 40, 4), dtype=np.uint16) * 7
    image[0, 0, 2] = 0
    patches, origins = P.extract_patches(image, 32, 32, nodata=0)
    assert origins == [(0, 0), (0, 8)]
    assert patches.dtype == np.float32 and patches.shape == (2, 32, 32, 4)
    assert np.isnan(patches[0, 0, 0, 2]) and patches[0, 0, 0, 1] == 7
    assert np.isnan(patches[:, 20:]).all() and not np.isnan(patches[1, :20]).any()
    # 12 padded rows of 32, plus the one nodata pixel in the first patch
    np.testing.assert_allclose(P.patch_nan_fraction(patches), [(12 * 32 + 1) / 1024, 12 / 32])
    assert P.patch_nan_fraction(patches[1]) == pytest.approx(12 / 32)


# --- TFRecord files ---------------------------------------------------------------------------


def test_feature_keys_follow_band_order():
    assert P.feature_keys() == (
        "toa_B2", "toa_B3", "toa_B4", "toa_B8", "sr_B2", "sr_B3", "sr_B4", "sr_B8",
    )  # fmt: skip


@pytest.mark.parametrize("name", ["pairs.tfrecord", "pairs.tfrecord.gz"])
def test_round_trip_is_exact_and_keeps_patch_id(tmp_path: Path, name: str):
    pairs = make_pairs(3)
    pairs[2] = (pairs[2][0], pairs[2][1])  # a pair without id
    path = tmp_path / name
    assert P.write_tfrecord(path, pairs) == 3
    with path.open("rb") as f:
        is_gzip = f.read(2) == b"\x1f\x8b"
    assert is_gzip == name.endswith(".gz")
    records = list(P.iter_records(path, SIZE))
    assert [r["patch_id"] for r in records] == ["scene/000", "scene/001", None]
    for record, (toa, sr, *_) in zip(records, pairs, strict=True):
        assert record["toa"].dtype == np.float32 and record["toa"].shape == (SIZE, SIZE, 4)
        np.testing.assert_array_equal(record["toa"], toa)
        np.testing.assert_array_equal(record["sr"], sr)


def test_same_input_gives_identical_bytes(tmp_path: Path):
    digests = set()
    for i in range(2):
        path = tmp_path / f"run{i}" / "pairs.tfrecord.gz"
        P.write_tfrecord(path, make_pairs(2, seed=7))
        digests.add(hashlib.sha256(path.read_bytes()).hexdigest())
        assert path.read_bytes()[4:8] == b"\0\0\0\0"  # gzip mtime 0: no clock in the bytes
    assert len(digests) == 1


def test_failed_write_leaves_no_file_and_no_temp(tmp_path: Path):
    def pairs():
        yield from make_pairs(2)
        raise RuntimeError("source failed")

    with pytest.raises(RuntimeError, match="source failed"):
        P.write_tfrecord(tmp_path / "pairs.tfrecord.gz", pairs())
    assert list(tmp_path.iterdir()) == []


def test_shape_errors(tmp_path: Path):
    toa = np.zeros((SIZE, SIZE, 4), np.float32)
    with pytest.raises(ValueError, match=r"\(size, size, 4\)"):
        P.serialize_pair(toa[..., :3], toa[..., :3])
    with pytest.raises(ValueError, match="must match"):
        P.serialize_pair(toa, np.zeros((16, 16, 4), np.float32))
    with pytest.raises(ValueError, match="float reflectance"):
        P.serialize_pair(toa.astype(np.uint16), toa.astype(np.uint16))
    path = tmp_path / "bad.tfrecord"
    with pytest.raises(InputDataError, match=r"bad\.tfrecord: record 1: toa has shape"):
        P.write_tfrecord(path, [(toa, toa), (toa[:, :16], toa[:, :16])])
    mixed = [(toa, toa), (toa[:16, :16], toa[:16, :16])]
    with pytest.raises(InputDataError, match="record 1 has shape"):
        P.write_tfrecord(path, mixed)
    assert list(tmp_path.iterdir()) == []


def test_off_schema_files_give_clear_errors(tmp_path: Path):
    import tensorflow as tf

    path = tmp_path / "pairs.tfrecord"
    P.write_tfrecord(path, make_pairs(1))
    with pytest.raises(
        InputDataError,
        match=r"1024 values, not 16x16=256 \(it holds 32x32 patches: pass patch_size=32\)",
    ):
        list(P.iter_records(path, 16))
    other = tmp_path / "other.tfrecord"
    example = tf.train.Example(
        features=tf.train.Features(
            feature={"B2": tf.train.Feature(float_list=tf.train.FloatList(value=[0.0] * 4))}
        )
    )
    with tf.io.TFRecordWriter(str(other)) as writer:
        writer.write(example.SerializeToString())
    with pytest.raises(InputDataError, match=r"other\.tfrecord: records lack .*toa_B2.*found: B2"):
        P.make_dataset([str(other)], patch_size=2, training=False)
    with pytest.raises(InputDataError, match="lack"):
        P.parse_example(tf.constant(example.SerializeToString()), 2)
    plain_named_gz = tmp_path / "plain.tfrecord.gz"
    plain_named_gz.write_bytes(path.read_bytes())
    with pytest.raises(InputDataError, match="not readable as a GZIP"):
        list(P.iter_records(plain_named_gz, SIZE))


def test_truncated_file_names_the_damaged_record(tmp_path: Path):
    path = tmp_path / "pairs.tfrecord"
    P.write_tfrecord(path, make_pairs(3))
    path.write_bytes(path.read_bytes()[:-100])
    records = P.iter_records(path, SIZE)
    assert next(records)["patch_id"] == "scene/000"
    with pytest.raises(InputDataError, match=r"pairs\.tfrecord: record 2: "):
        list(records)


def test_list_tfrecords(tmp_path: Path):
    with pytest.raises(InputDataError, match="no TFRecord files") as info:
        P.list_tfrecords(tmp_path)
    assert str(tmp_path) in str(info.value)
    for name in ["b.tfrecord.gz", "a.tfrecord", "notes.json", "sub/c.tfrecord"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(b"")
    expected = [str(tmp_path / "a.tfrecord"), str(tmp_path / "b.tfrecord.gz")]
    assert P.list_tfrecords(tmp_path) == expected
    assert P.list_tfrecords(tmp_path / "a.tfrecord") == [str(tmp_path / "a.tfrecord")]


# --- tf.data pipeline -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def record_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], np.ndarray]:
    """Two files (plain and gzip) holding 10 pairs; returns the files and all TOA patches."""
    folder = tmp_path_factory.mktemp("records")
    pairs = make_pairs(10)
    files = [str(folder / "a.tfrecord"), str(folder / "b.tfrecord.gz")]
    P.write_tfrecord(files[0], pairs[:6])
    P.write_tfrecord(files[1], pairs[6:])
    return files, np.stack([toa for toa, _, _ in pairs])


def as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = [(toa.numpy(), sr.numpy()) for toa, sr in dataset]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_evaluation_dataset_keeps_order_values_and_last_batch(record_files):
    files, toas = record_files
    dataset = P.make_dataset(files, patch_size=SIZE, batch_size=4, training=False)
    shapes = [tuple(toa.shape) for toa, _ in dataset]
    assert shapes == [(4, SIZE, SIZE, 4), (4, SIZE, SIZE, 4), (2, SIZE, SIZE, 4)]
    toa, sr = as_arrays(dataset)
    assert toa.dtype == np.float32 and sr.dtype == np.float32
    np.testing.assert_array_equal(toa, toas)
    np.testing.assert_array_equal(sr, toas * 2 + 0.1)


def test_training_dataset_is_seeded_and_drops_the_partial_batch(record_files):
    files, _ = record_files

    def first_batch(seed: int) -> np.ndarray:
        dataset = P.make_dataset(files, patch_size=SIZE, batch_size=4, training=True, seed=seed)
        assert dataset.element_spec[0].shape == (4, SIZE, SIZE, 4)
        batch = next(iter(dataset))[0].numpy()
        assert len(list(dataset)) == 2  # 10 records -> 2 full batches
        return batch

    np.testing.assert_array_equal(first_batch(3), first_batch(3))
    assert not np.array_equal(first_batch(3), first_batch(4))


def test_augmentation_transforms_toa_and_sr_identically(record_files):
    files, _ = record_files
    common = dict(patch_size=SIZE, batch_size=2, training=True, seed=5)
    plain_toa, _ = as_arrays(P.make_dataset(files, augment=False, **common))
    augmented = P.make_dataset(files, **common)
    transforms_seen = set()
    for epoch in range(2):
        toa, sr = as_arrays(augmented)
        np.testing.assert_array_equal(sr, toa * 2 + 0.1)  # the pair relation holds pixel by pixel
        if epoch == 0:
            assert not np.array_equal(toa, plain_toa)
            for aug, plain in zip(toa, plain_toa, strict=True):  # same shuffle, then a D4 element
                matches = [np.array_equal(aug, t) for t in dihedral(plain)]
                assert any(matches)
                transforms_seen.add(matches.index(True))
    assert len(transforms_seen) >= 3


def test_full_size_patch_through_the_pipeline(tmp_path: Path):
    path = tmp_path / "big.tfrecord.gz"
    P.write_tfrecord(path, make_pairs(2, size=256))
    dataset = P.make_dataset([str(path)], training=True, cache=str(tmp_path / "cache" / "c"))
    toa, sr = next(iter(dataset))
    assert toa.shape == (2, 256, 256, 4) and sr.shape == (2, 256, 256, 4)


@pytest.mark.service
def test_gcs_tfrecords_are_downloaded_once_and_read(gcs_prefix: str, tmp_path: Path):
    from s2ac.io import storage

    local = tmp_path / "pairs.tfrecord.gz"
    pairs = make_pairs(3)
    P.write_tfrecord(local, pairs)
    storage.upload(local, gcs_prefix + "pairs.tfrecord.gz")
    files = P.list_tfrecords(gcs_prefix)
    assert files == [gcs_prefix + "pairs.tfrecord.gz"]
    cache_dir = tmp_path / "cache"
    dataset = P.make_dataset(
        files, patch_size=SIZE, batch_size=3, training=False, cache_dir=cache_dir
    )
    toa, sr = next(iter(dataset))
    np.testing.assert_array_equal(toa.numpy(), np.stack([p[0] for p in pairs]))
    np.testing.assert_array_equal(sr.numpy(), np.stack([p[1] for p in pairs]))
    cached = next(cache_dir.rglob("pairs.tfrecord.gz"))
    mtime = cached.stat().st_mtime_ns
    P.make_dataset(files, patch_size=SIZE, training=False, cache_dir=cache_dir)
    assert cached.stat().st_mtime_ns == mtime  # same size: not downloaded again
    ids = [r["patch_id"] for r in P.iter_records(files[0], SIZE)]
    assert ids == ["scene/000", "scene/001", "scene/002"]
