"""Data validation (and the per-patch statistics it runs on): the clean dataset passes; each
corruption fails its named expectation."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from s2ac.bands import BAND_NAMES
from s2ac.data.statistics import STAT_COLUMNS, patch_statistics
from s2ac.data.validation import ValidationReport, format_report, validate_dataset
from s2ac.errors import InputDataError

SIZE = 32
BUFFER_PX = 16
SR_MEANS = np.array([0.05, 0.08, 0.07, 0.3], dtype=np.float32)  # B2, B3, B4, B8: vegetation
WATER_SR_MEANS = np.array([0.04, 0.035, 0.025, 0.015], dtype=np.float32)
PATH_REFLECTANCE = np.array([0.08, 0.05, 0.03, 0.01], dtype=np.float32)
# (patch_id, split, row, col) in one source scene; held-out windows >= BUFFER_PX from train.
LAYOUT = [
    ("train-0000", "train", 0, 0),
    ("train-0001", "train", 0, 32),
    ("train-0002", "train", 0, 64),
    ("val-0000", "val", 96, 0),
    ("test-0000", "test", 160, 0),
    ("test-0001", "test", 160, 64),
]


def _pair(
    seed: int, height: int = SIZE, width: int = SIZE, means: np.ndarray = SR_MEANS
) -> tuple[np.ndarray, np.ndarray]:
    """Textured SR around SR_MEANS and TOA = 0.9 SR + path reflectance (blue TOA > SR)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    noise = 0.2 * rng.standard_normal((height, width))
    texture = 0.5 * np.sin(x / 5 + seed) * np.cos(y / 7) + noise
    sr = np.clip(means * (1 + 0.4 * texture[..., None]), 0.001, None).astype(np.float32)
    return (0.9 * sr + PATH_REFLECTANCE).astype(np.float32), sr


def _clean_patches() -> list[dict]:
    patches = []
    for seed, (patch_id, split, row, col) in enumerate(LAYOUT):
        toa, sr = _pair(seed)
        patches.append(
            {"patch_id": patch_id, "split": split, "source": "scene-a", "row": row, "col": col}
            | {"toa": toa, "sr": sr}
        )
    return patches


def _example(patch: dict) -> bytes:
    import tensorflow as tf

    feature = {
        "patch_id": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[patch["patch_id"].encode()])
        )
    }
    for kind in ("toa", "sr"):
        array = patch[kind]
        for index in range(array.shape[-1]):  # a 3-band array writes B2, B3, B4 only
            values = array[..., index].ravel()
            feature[f"{kind}_{BAND_NAMES[index]}"] = tf.train.Feature(
                float_list=tf.train.FloatList(value=values)
            )
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_dataset(root: Path, patches: list[dict]) -> Path:
    """DIR/manifest.json and DIR/<split>/part-0.tfrecord.gz, as the generator lays them out."""
    import tensorflow as tf

    for split in ("train", "val", "test"):
        (root / split).mkdir(parents=True, exist_ok=True)
        with tf.io.TFRecordWriter(
            str(root / split / "part-0.tfrecord.gz"), options="GZIP"
        ) as writer:
            for patch in (p for p in patches if p["split"] == split):
                writer.write(_example(patch))
    samples = [{k: p[k] for k in ("patch_id", "split", "source", "row", "col")} for p in patches]
    manifest = {"patch_size": SIZE, "samples": samples, "split": {"buffer_px": BUFFER_PX}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


@pytest.fixture
def make_dataset(tmp_path: Path) -> Callable[[Callable[[list[dict]], None] | None], Path]:
    def make(corrupt: Callable[[list[dict]], None] | None = None) -> Path:
        patches = _clean_patches()
        if corrupt is not None:
            corrupt(patches)
        return write_dataset(tmp_path / "dataset", patches)

    return make


def _validate(dataset: Path) -> ValidationReport:
    return validate_dataset(dataset, dataset.parent / "docs")


def _failed(report: ValidationReport) -> dict[tuple[str, str], tuple[str, ...]]:
    """{(expectation name, column): failing example patches} of the failed expectations."""
    return {(r.name, r.column): r.examples for r in report.results if not r.success}


def _patch(patches: list[dict], patch_id: str) -> dict:
    return next(p for p in patches if p["patch_id"] == patch_id)


def test_clean_dataset_passes_and_writes_docs(make_dataset) -> None:
    dataset = make_dataset()
    report = _validate(dataset)
    assert report.passed, format_report(report)
    assert report.n_patches == len(LAYOUT)
    assert report.docs_index.is_file()
    assert (report.docs_index.parent / "validations").is_dir()
    summary = json.loads(report.summary_path.read_text())
    assert summary["passed"] is True and summary["n_patches"] == len(LAYOUT)
    assert len(summary["results"]) == len(report.results) >= 20
    assert all(result.description for result in report.results)
    stats = report.statistics_path.read_text().splitlines()
    assert stats[0].split(",") == STAT_COLUMNS and len(stats) == len(LAYOUT) + 1
    assert not any(p.name.startswith(".") for p in report.docs_index.parent.iterdir())
    assert "passed: 0 of" in format_report(report)


def test_patch_statistics_values(make_dataset) -> None:
    table = patch_statistics(make_dataset()).set_index("patch_id")
    assert list(table.index) == [p[0] for p in LAYOUT]  # train, val, test order
    assert (table[["height", "width", "n_bands"]] == [SIZE, SIZE, 4]).all().all()
    assert table["sr_finite_share"].eq(1).all() and table["toa_finite_share"].eq(1).all()
    toa, sr = _pair(0)
    first = table.loc["train-0000"]
    assert first["sr_mean_B8"] == pytest.approx(sr[..., 3].mean(), rel=1e-5)
    assert first["blue_excess"] == pytest.approx(toa[..., 0].mean() - sr[..., 0].mean(), rel=1e-5)
    assert first["source"] == "scene-a" and first["file"] == "train/part-0.tfrecord.gz"
    assert table["content_hash"].is_unique
    assert not table["leak_window"].any() and not table["leak_duplicate"].any()


def test_nan_patch_fails_finite_share(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        _patch(patches, "train-0001")["sr"][4:8, 4:8, :] = np.nan

    failed = _failed(_validate(make_dataset(corrupt)))
    assert failed.keys() == {("expect_column_values_to_be_between", "sr_finite_share")}
    assert failed["expect_column_values_to_be_between", "sr_finite_share"][0].startswith(
        "train-0001="
    )


def test_dn_scaled_patch_fails_reflectance_range(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        patch = _patch(patches, "test-0000")
        patch["toa"], patch["sr"] = patch["toa"] * 10_000, patch["sr"] * 10_000

    report = _validate(make_dataset(corrupt))
    failed = _failed(report)
    for column in ("sr_max", "toa_max", "sr_min"):
        assert failed["expect_column_values_to_be_between", column][0].startswith("test-0000=")
    assert ("expect_column_mean_to_be_between", "sr_mean_B2") in failed
    assert not report.passed


def test_swapped_blue_and_nir_fail_spectral_checks(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        for patch in patches:
            for kind in ("toa", "sr"):
                patch[kind] = patch[kind][..., [3, 1, 2, 0]].copy()

    failed = _failed(_validate(make_dataset(corrupt)))
    assert ("expect_column_pair_values_a_to_be_greater_than_b", "sr_mean_B8, sr_mean_B2") in failed
    assert ("expect_column_pair_values_a_to_be_greater_than_b", "toa_mean_B2, sr_mean_B2") in failed
    assert ("expect_column_pair_values_a_to_be_greater_than_b", "blue_excess, nir_excess") in failed
    assert ("expect_column_mean_to_be_between", "blue_excess") in failed
    assert ("expect_column_mean_to_be_between", "sr_mean_B2") in failed
    # Shapes and ranges are still fine: the failure points at the band order, not at the data.
    assert not any(column in {"sr_max", "height", "n_bands"} for _, column in failed)


def test_half_water_scene_passes_but_swapped_fails(make_dataset) -> None:
    """Water inverts NIR > blue; the blue-vs-NIR excess check still tells swapped bands apart."""

    def water(patches: list[dict]) -> None:
        for seed, patch in enumerate(patches[::2]):
            patch["toa"], patch["sr"] = _pair(seed + 50, means=WATER_SR_MEANS)

    def swapped_water(patches: list[dict]) -> None:
        water(patches)
        for patch in patches:
            for kind in ("toa", "sr"):
                patch[kind] = patch[kind][..., [3, 1, 2, 0]]

    report = _validate(make_dataset(water))
    assert report.passed, format_report(report)
    failed = _failed(_validate(make_dataset(swapped_water)))
    assert ("expect_column_pair_values_a_to_be_greater_than_b", "blue_excess, nir_excess") in failed


def test_overlapping_windows_across_splits_leak(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        _patch(patches, "test-0001").update(row=8, col=40)  # overlaps train-0001

    failed = _failed(_validate(make_dataset(corrupt)))
    assert failed == {("expect_column_values_to_be_in_set", "leak_window"): ("test-0001=True",)}


def test_window_closer_than_buffer_leaks(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        _patch(patches, "val-0000").update(row=SIZE + BUFFER_PX - 1, col=0)  # gap 15 px < 16

    assert ("expect_column_values_to_be_in_set", "leak_window") in _failed(
        _validate(make_dataset(corrupt))
    )


def test_duplicate_across_splits_leaks(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        source, copy = _patch(patches, "train-0002"), _patch(patches, "test-0000")
        copy["toa"], copy["sr"] = source["toa"].copy(), source["sr"].copy()

    failed = _failed(_validate(make_dataset(corrupt)))
    assert set(failed["expect_column_values_to_be_in_set", "leak_duplicate"]) == {
        "train-0002=True",
        "test-0000=True",
    }
    assert ("expect_column_values_to_be_unique", "content_hash") in failed


def test_wrong_shape_and_band_count_fail_shape_checks(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        narrow = _patch(patches, "train-0000")
        narrow["toa"], narrow["sr"] = _pair(7, width=16)  # 32 x 16
        three = _patch(patches, "val-0000")
        three["toa"], three["sr"] = three["toa"][..., :3], three["sr"][..., :3]

    report = _validate(make_dataset(corrupt))
    failed = _failed(report)
    assert failed["expect_column_values_to_be_in_set", "height"] == ("train-0000=16",)
    assert failed["expect_column_values_to_be_in_set", "n_bands"] == ("val-0000=3",)
    text = format_report(report)
    assert "FAILED expect_column_values_to_be_in_set(height): 1 of 6 patches" in text
    assert "expected in {32}" in text and "e.g. train-0000=16" in text
    assert "FAILED expect_column_values_to_be_in_set(n_bands)" in text


def test_format_report_names_expectation_column_and_patch(make_dataset) -> None:
    def corrupt(patches: list[dict]) -> None:
        _patch(patches, "train-0002")["sr"] *= 10_000

    text = format_report(_validate(make_dataset(corrupt)))
    assert text.startswith("Data validation FAILED:")
    line = next(line for line in text.splitlines() if "(sr_max)" in line)
    assert "FAILED expect_column_values_to_be_between(sr_max): 1 of 6 patches" in line
    assert "expected in [0, 1.5]" in line and "e.g. train-0002=" in line
    assert "DN not divided by 10000" in text  # the expectation's meaning follows


def test_missing_manifest_and_corrupt_file_are_input_errors(make_dataset) -> None:
    dataset = make_dataset()
    record_file = dataset / "val" / "part-0.tfrecord.gz"
    record_file.write_bytes(gzip.compress(gzip.decompress(record_file.read_bytes())[:-9]))
    with pytest.raises(InputDataError, match=r"val/part-0\.tfrecord\.gz: record 0"):
        patch_statistics(dataset)
    (dataset / "manifest.json").unlink()
    with pytest.raises(InputDataError, match=r"manifest\.json not found"):
        validate_dataset(dataset)


def test_relative_docs_dir_is_resolved(make_dataset, tmp_path: Path, monkeypatch) -> None:
    dataset = make_dataset(None)
    monkeypatch.chdir(tmp_path)
    report = validate_dataset(dataset, "docs-relative")
    assert report.passed
    assert (tmp_path / "docs-relative" / "index.html").is_file()
