"""The tf.data pipeline: order, seeds, augmentation, caching, gs:// files (32x32 unless noted)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fakes.pairs import SIZE, make_pairs
from s2ac.data.input import make_dataset, manifest_geometry
from s2ac.data.tfrecord import iter_records, list_tfrecords, write_tfrecord


def dihedral(patch: np.ndarray) -> list[np.ndarray]:
    """The 8 flips/rotations of a (H, W, C) patch."""
    return [np.rot90(p, k, axes=(0, 1)) for p in (patch, patch[:, ::-1]) for k in range(4)]


@pytest.fixture(scope="module")
def record_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[str], np.ndarray]:
    """Two files (plain and gzip) holding 10 pairs; returns the files and all TOA patches."""
    folder = tmp_path_factory.mktemp("records")
    pairs = make_pairs(10)
    files = [str(folder / "a.tfrecord"), str(folder / "b.tfrecord.gz")]
    write_tfrecord(files[0], pairs[:6])
    write_tfrecord(files[1], pairs[6:])
    return files, np.stack([toa for toa, _, _ in pairs])


def as_arrays(dataset) -> tuple[np.ndarray, np.ndarray]:
    batches = [(toa.numpy(), sr.numpy()) for toa, sr in dataset]
    return np.concatenate([b[0] for b in batches]), np.concatenate([b[1] for b in batches])


def test_evaluation_dataset_keeps_order_values_and_last_batch(record_files):
    files, toas = record_files
    dataset = make_dataset(files, patch_size=SIZE, batch_size=4, training=False)
    shapes = [tuple(toa.shape) for toa, _ in dataset]
    assert shapes == [(4, SIZE, SIZE, 4), (4, SIZE, SIZE, 4), (2, SIZE, SIZE, 4)]
    toa, sr = as_arrays(dataset)
    assert toa.dtype == np.float32 and sr.dtype == np.float32
    np.testing.assert_array_equal(toa, toas)
    np.testing.assert_array_equal(sr, toas * 2 + 0.1)


def test_training_dataset_is_seeded_and_drops_the_partial_batch(record_files):
    files, _ = record_files

    def first_batch(seed: int) -> np.ndarray:
        dataset = make_dataset(files, patch_size=SIZE, batch_size=4, training=True, seed=seed)
        assert dataset.element_spec[0].shape == (4, SIZE, SIZE, 4)
        batch = next(iter(dataset))[0].numpy()
        assert len(list(dataset)) == 2  # 10 records -> 2 full batches
        return batch

    np.testing.assert_array_equal(first_batch(3), first_batch(3))
    assert not np.array_equal(first_batch(3), first_batch(4))


def test_augmentation_transforms_toa_and_sr_identically(record_files):
    files, _ = record_files
    common = dict(patch_size=SIZE, batch_size=2, training=True, seed=5)
    plain_toa, _ = as_arrays(make_dataset(files, augment=False, **common))
    augmented = make_dataset(files, **common)
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
    write_tfrecord(path, make_pairs(2, size=256))
    dataset = make_dataset([str(path)], training=True, cache=str(tmp_path / "cache" / "c"))
    toa, sr = next(iter(dataset))
    assert toa.shape == (2, 256, 256, 4) and sr.shape == (2, 256, 256, 4)


@pytest.mark.service
def test_gcs_tfrecords_are_downloaded_once_and_read(gcs_prefix: str, tmp_path: Path):
    from s2ac.io import storage

    local = tmp_path / "pairs.tfrecord.gz"
    pairs = make_pairs(3)
    write_tfrecord(local, pairs)
    storage.upload(local, gcs_prefix + "pairs.tfrecord.gz")
    files = list_tfrecords(gcs_prefix)
    assert files == [gcs_prefix + "pairs.tfrecord.gz"]
    cache_dir = tmp_path / "cache"
    dataset = make_dataset(
        files, patch_size=SIZE, batch_size=3, training=False, cache_dir=cache_dir
    )
    toa, sr = next(iter(dataset))
    np.testing.assert_array_equal(toa.numpy(), np.stack([p[0] for p in pairs]))
    np.testing.assert_array_equal(sr.numpy(), np.stack([p[1] for p in pairs]))
    cached = next(cache_dir.rglob("pairs.tfrecord.gz"))
    mtime = cached.stat().st_mtime_ns
    make_dataset(files, patch_size=SIZE, training=False, cache_dir=cache_dir)
    assert cached.stat().st_mtime_ns == mtime  # same size: not downloaded again
    ids = [r["patch_id"] for r in iter_records(files[0], SIZE)]
    assert ids == ["scene/000", "scene/001", "scene/002"]


def test_geometry_is_joined_by_patch_id(tmp_path):
    """With a geometry table the batches are ({"toa", "geometry"}, sr), each sample with its
    own geometry (through shuffling and augmentation); an unknown patch id is an error."""
    path = tmp_path / "part.tfrecord"
    pairs = make_pairs(6)
    write_tfrecord(path, pairs)
    geometry = {pid: (10.0 * i, 2.0, 90.0, 0.1, 0.3, 0.0) for i, (_, _, pid) in enumerate(pairs)}
    dataset = make_dataset([str(path)], patch_size=SIZE, batch_size=3, training=True,
                           geometry=geometry)  # fmt: skip
    seen = {}
    for inputs, sr in dataset:
        assert set(inputs) == {"toa", "geometry"} and inputs["geometry"].shape == (3, 6)
        for toa, g, target in zip(inputs["toa"].numpy(), inputs["geometry"].numpy(), sr.numpy(),
                                  strict=True):  # fmt: skip
            np.testing.assert_allclose(target, toa * 2 + 0.1, rtol=1e-6)  # still a pair
            seen[round(float(g[0]))] = g
    assert sorted(seen) == [0, 10, 20, 30, 40, 50]
    missing = dict(list(geometry.items())[1:])
    with pytest.raises(Exception, match="has no geometry in the manifest"):
        list(make_dataset([str(path)], patch_size=SIZE, batch_size=6, training=False,
                          geometry=missing))  # fmt: skip


def test_manifest_geometry_reads_each_samples_atmosphere():
    atmosphere = {"aot550": 0.2, "aerosol_model": "urban", "water_vapour": 1.0, "ozone": 0.3,
                  "solar_zenith": 40.0, "view_zenith": 3.0, "relative_azimuth": 200.0,
                  "elevation_km": 0.5, "satellite": "S2B"}  # fmt: skip
    manifest = {"samples": [{"patch_id": "a", "atmosphere": atmosphere}, {"patch_id": "b"}]}
    assert manifest_geometry(manifest) == {"a": (40.0, 3.0, 200.0, 0.5, 0.3, 1.0)}
    assert manifest_geometry({"samples": []}) == {}
