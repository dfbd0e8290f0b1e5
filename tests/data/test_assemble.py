"""s2ac.data.assemble and ``s2ac data assemble``: an Earth Engine export becomes a dataset that
validation, training and evaluation accept, split by location, from and to local or gs://."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from fakes.earthengine import synthetic_pair
from fakes.ee_fixtures import ee_fake_fixture, ee_key_fixture, ee_server_fixture  # noqa: F401
from s2ac.cli import app
from s2ac.config import DataConfig, EarthEngineConfig
from s2ac.data import assemble as A
from s2ac.data.earthengine import client as C
from s2ac.data.earthengine import export as X
from s2ac.data.input import make_dataset
from s2ac.data.tfrecord import iter_records, list_tfrecords, write_tfrecord
from s2ac.data.validation import format_report, validate_dataset
from s2ac.errors import InputDataError
from s2ac.io import storage
from s2ac.training.train import check_dataset

service = pytest.mark.service
SIZE = 32
PER_SIDE = 2  # each scene exports a 2x2 square of patches
CONFIG = DataConfig(patch_size=SIZE, seed=0, test_fraction=0.2, val_fraction=0.2,
                    split_buffer_px=16, max_nonfinite_fraction=0.01)  # fmt: skip
# (scene, chip upper-left x in km): 7 scenes in 5 places. 44PLQ has two dates, and 43QHA's chip
# lies within 16 px (160 m) of 43QGA's: each pair must stay in one split.
SCENES = [
    ("20231004T051641_20231004T053012_T43QGA", 100),
    ("20231006T051641_20231006T053012_T43QHA", 100.7),
    ("20231009T051641_20231009T053012_T44PLQ", 300),
    ("20231024T051641_20231024T053012_T44PLQ", 300),
    ("20231011T051641_20231011T053012_T44QMK", 500),
    ("20231014T051641_20231014T053012_T45RUL", 700),
    ("20231019T051641_20231019T053012_T42RTN", 900),
]
MASKED = SCENES[4][0]  # its patch 0 is 10 % masked (zeros), 1 is 20 % NaN, 2 has one NaN pixel


def export_patches(scene: str, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    pairs = [synthetic_pair(seed * 10 + k, SIZE) for k in range(PER_SIDE**2)]
    if scene == MASKED:
        pairs[0][0][:3, :] = 0.0  # Earth Engine fills masked pixels with 0 (~10 %)
        pairs[0][1][:3, :] = 0.0
        pairs[1][1][:7, :, 2] = np.nan  # 22 % of pixels lack SR red
        pairs[2][0][5, 5, 0] = np.nan  # 1 pixel of 1024: kept, filled with 0
    return pairs


def write_export(prefix: str, scenes: list[tuple[str, float]] = SCENES, markers: bool = True):
    """What `s2ac data export` leaves: <scene>-00000.tfrecord.gz and _s2ac_tasks/<scene>.json."""
    for seed, (scene, x_km) in enumerate(scenes):
        write_tfrecord(f"{prefix}/{scene}-00000.tfrecord.gz", export_patches(scene, seed))
        if markers:
            marker = {"scene": scene, "stratum": f"state-{seed % 3}", "crs": "EPSG:32643",
                      "transform": [10, 0, x_km * 1000, 0, -10, 2_000_000],
                      "size_px": PER_SIDE * SIZE, "patch_px": SIZE}  # fmt: skip
            storage.write_bytes(f"{prefix}/_s2ac_tasks/{scene}.json", json.dumps(marker).encode())


def load(manifest: str) -> dict[str, Any]:
    return json.loads(storage.read_bytes(manifest))


def check_splits(manifest: dict[str, Any], root: str) -> None:
    """Counts add up, files hold what the manifest says, no scene or place spans two splits."""
    samples = manifest["samples"]
    counts = manifest["split"]["counts"]
    assert sum(counts.values()) == len(samples) == manifest["filter"]["kept"]
    assert manifest["filter"]["kept"] + manifest["filter"]["dropped"] == manifest["filter"]["read"]
    for key in ("scene", "group"):
        splits_of: dict[str, set[str]] = {}
        for sample in samples:
            splits_of.setdefault(sample[key], set()).add(sample["split"])
        assert all(len(s) == 1 for s in splits_of.values()), key
    for split in ("train", "val", "test"):
        ids = [
            r["patch_id"]
            for uri in list_tfrecords(f"{root}/{split}")
            for r in iter_records(uri, manifest["patch_size"])
        ]
        assert len(ids) == counts[split] > 0
        assert sorted(ids) == sorted(s["patch_id"] for s in samples if s["split"] == split)


# --- pieces -----------------------------------------------------------------------------------


def test_scene_and_tile_come_from_earth_engine_file_names():
    uri = "gs://b/p/20231004T051641_20231004T053012_T43QGU-00001.tfrecord.gz"
    assert A.scene_of(uri) == "20231004T051641_20231004T053012_T43QGU"
    assert A.tile_of(A.scene_of(uri)) == "43QGU"
    assert A.scene_of("/x/chip.tfrecord") == "chip" and A.tile_of("chip") is None


def test_bad_pixels_are_non_finite_or_masked_in_toa_or_sr():
    toa, sr = synthetic_pair(0, 10)
    assert A.bad_pixel_fraction(toa, sr) == 0.0
    toa[0, :] = 0.0  # masked in L1C: 10 pixels
    sr[1, :2] = 0.0  # masked in L2A: 2 pixels
    sr[2, 0, 3] = np.inf  # one band of one pixel
    toa[3, 0, 0] = 0.0  # a single zero band is data (dark water), not a mask
    assert A.bad_pixel_fraction(toa, sr) == pytest.approx(13 / 100)


def test_one_tile_or_neighbouring_chips_make_one_group():
    chip = lambda x: A._Chip("EPSG:32643", (10, 0, x, 0, -10, 0), 64, None)  # noqa: E731
    scenes = ["a_T43QGA", "b_T43QGA", "c_T43QHA", "d_T43QHB", "e_T44QHB", "loose"]
    chips = {"c_T43QHA": chip(0), "d_T43QHB": chip(640 + 150), "e_T44QHB": chip(640 + 150)}
    chips["e_T44QHB"] = A._Chip("EPSG:32644", (10, 0, 790, 0, -10, 0), 64, None)  # other zone
    groups = A.location_groups(scenes, chips, buffer_px=16)  # 160 m: the 150 m gap is too close
    assert groups == {"a_T43QGA": "43QGA", "b_T43QGA": "43QGA", "c_T43QHA": "43QHA",
                      "d_T43QHB": "43QHA", "e_T44QHB": "44QHB", "loose": "loose"}  # fmt: skip
    assert A.location_groups(scenes, chips, buffer_px=15)["d_T43QHB"] == "43QHB"


def test_splits_follow_the_fractions_by_patches_and_each_gets_a_group():
    sizes = {f"g{i:02d}": 4 for i in range(20)}
    split_of = A.assign_splits(sizes, CONFIG, "export")
    share = {s: sum(sizes[g] for g in split_of if split_of[g] == s) / 80 for s in A.SPLITS}
    assert share == {"train": 0.6, "val": 0.2, "test": 0.2}
    assert A.assign_splits(sizes, CONFIG, "export") == split_of  # seeded
    assert A.assign_splits(sizes, CONFIG.model_copy(update={"seed": 1}), "export") != split_of
    three = A.assign_splits({"a": 50, "b": 1, "c": 1}, CONFIG, "export")
    assert sorted(three.values()) == ["test", "train", "val"]  # every split gets a group
    no_val = CONFIG.model_copy(update={"val_fraction": 0.0})
    assert set(A.assign_splits({"a": 1, "b": 1}, no_val, "export").values()) == {"train", "test"}


# --- assembling a local export ----------------------------------------------------------------


@pytest.fixture(scope="module")
def assembled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("assemble")
    write_export(str(root / "export"))
    manifest = A.assemble_dataset(str(root / "export"), root / "dataset", CONFIG)
    assert manifest == f"{root / 'dataset'}/manifest.json"
    return root / "export", root / "dataset", load(manifest)


def test_local_export_becomes_a_dataset_split_by_place(assembled):
    export, dataset, manifest = assembled
    check_splits(manifest, str(dataset))
    assert manifest["name"] == "s2ac-earthengine" and manifest["patch_size"] == SIZE
    assert manifest["sources"][0] == {"name": "earthengine-export", "uri": str(export),
                                      "files": 7, "scenes": 7, "records": 28}  # fmt: skip
    assert {s["name"] for s in manifest["sources"][1:]} == {
        "COPERNICUS/S2_HARMONIZED", "COPERNICUS/S2_SR_HARMONIZED",
        "GOOGLE/CLOUD_SCORE_PLUS/V1/S2_HARMONIZED",
    }  # fmt: skip
    groups = manifest["split"]["groups"]
    places = sorted(g for split in groups.values() for g in split)
    assert places == ["42RTN", "43QGA", "44PLQ", "44QMK", "45RUL"]
    by_scene = {s["scene"]: s for s in manifest["samples"]}
    assert by_scene[SCENES[1][0]]["group"] == "43QGA"  # the neighbouring chip joined it
    windows = {s["patch_id"]: (s["source"], s["row"], s["col"]) for s in manifest["samples"]}
    first = SCENES[0][0]  # chip at x = 100 km, y = 2000 km: pixel (-200000, 10000) of the grid
    assert [windows[f"{first}/{k:04d}"] for k in range(4)] == [
        ("EPSG:32643", -200_000 + row, 10_000 + col) for row in (0, SIZE) for col in (0, SIZE)
    ]
    assert list((dataset / "train").iterdir()) and not list(dataset.parent.glob(".dataset*"))


def test_masked_and_non_finite_patches_are_dropped_and_counted(assembled):
    _, dataset, manifest = assembled
    assert manifest["filter"] | {"bad_pixel": ""} == {
        "bad_pixel": "", "max_bad_fraction": 0.01, "read": 28, "kept": 26, "dropped": 2,
        "bad_pixels_kept": 1, "scenes_without_patches": [],
    }  # fmt: skip
    kept = {s["patch_id"]: s for s in manifest["samples"] if s["scene"] == MASKED}
    assert sorted(kept) == [f"{MASKED}/0002", f"{MASKED}/0003"]
    sample = kept[f"{MASKED}/0002"]
    (record,) = [
        r
        for r in iter_records(dataset / sample["file"], SIZE)
        if r["patch_id"] == sample["patch_id"]
    ]
    assert np.isfinite(record["toa"]).all() and record["toa"][5, 5, 0] == 0.0  # NaN filled
    assert (sample["row"], sample["col"]) == (-200_000 + SIZE, 50_000)  # place 2 of the 2x2


def test_the_dataset_passes_validation_and_the_training_check(assembled, tmp_path):
    _, dataset, manifest = assembled
    report = validate_dataset(dataset, tmp_path / "docs")
    assert report.passed, format_report(report)
    assert report.n_patches == len(manifest["samples"])
    assert check_dataset(str(dataset))["digest"] == manifest["digest"]
    toa, sr = next(iter(make_dataset(list_tfrecords(dataset / "train"), patch_size=SIZE,
                                     batch_size=4, training=True)))  # fmt: skip
    assert toa.shape == sr.shape == (4, SIZE, SIZE, 4)


def test_same_seed_same_dataset_other_seed_other_split(assembled, tmp_path):
    export, _, first = assembled
    again = load(A.assemble_dataset(str(export), tmp_path / "again", CONFIG))
    assert again["digest"] == first["digest"] and again["samples"] == first["samples"]
    other = CONFIG.model_copy(update={"seed": 3})
    moved = load(A.assemble_dataset(str(export), tmp_path / "again", other))  # replaces it
    assert moved["split"]["groups"] != first["split"]["groups"]
    assert moved["digest"] != first["digest"]
    assert load(str(tmp_path / "again" / "manifest.json"))["seed"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]  # no staging left


def test_assemble_never_replaces_what_it_did_not_write(assembled, tmp_path):
    export, _, _ = assembled
    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "field-log.txt").write_text("do not lose")
    with pytest.raises(InputDataError, match="holds no s2ac dataset: refusing to replace it"):
        A.assemble_dataset(str(export), precious, CONFIG)
    assert (precious / "field-log.txt").read_text() == "do not lose"
    A.assemble_dataset(str(export), precious, CONFIG, overwrite=True)
    assert (precious / "manifest.json").is_file() and not (precious / "field-log.txt").exists()


def test_without_markers_scenes_are_grouped_by_tile(tmp_path):
    write_export(str(tmp_path / "export"), markers=False)
    manifest = load(A.assemble_dataset(str(tmp_path / "export"), tmp_path / "data", CONFIG))
    check_splits(manifest, str(tmp_path / "data"))
    assert sum(map(len, manifest["split"]["groups"].values())) == 6  # 43QHA is its own now
    assert not any("row" in s for s in manifest["samples"])


# --- errors -----------------------------------------------------------------------------------


def test_no_records_is_an_error_naming_the_prefix(tmp_path):
    with pytest.raises(InputDataError, match=rf"^{re.escape(str(tmp_path))}/none: no exported"):
        A.assemble_dataset(str(tmp_path / "none"), tmp_path / "out", CONFIG)
    (tmp_path / "tifs").mkdir()
    (tmp_path / "tifs" / "scene.tif").write_bytes(b"II*\0")
    with pytest.raises(InputDataError, match=r"tifs: no exported .* --format TFRecord"):
        A.assemble_dataset(str(tmp_path / "tifs"), tmp_path / "out", CONFIG)
    write_tfrecord(tmp_path / "empty" / "x-00000.tfrecord.gz", [])
    with pytest.raises(InputDataError, match=r"empty: the 1 TFRecord files hold no records"):
        A.assemble_dataset(str(tmp_path / "empty"), tmp_path / "out", CONFIG)
    assert not (tmp_path / "out").exists()


def test_a_wrong_schema_or_patch_size_names_the_file(tmp_path):
    import tensorflow as tf

    path = tmp_path / "export" / "a_T43QGA-00000.tfrecord.gz"
    path.parent.mkdir()
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        feature = {"B2": tf.train.Feature(float_list=tf.train.FloatList(value=[0.1] * 4))}
        writer.write(
            tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
        )
    with pytest.raises(InputDataError, match=rf"^{re.escape(str(path))}: records lack the fea"):
        A.assemble_dataset(str(path.parent), tmp_path / "out", CONFIG)
    write_export(str(tmp_path / "export64"), SCENES[:1])
    with pytest.raises(InputDataError, match=r"T43QGA-00000.tfrecord.gz: feature toa_B2 has 1024"):
        A.assemble_dataset(str(tmp_path / "export64"), tmp_path / "out",
                           CONFIG.model_copy(update={"patch_size": 64}))  # fmt: skip


def test_too_few_places_for_three_splits(tmp_path):
    write_export(str(tmp_path / "export"), [SCENES[0], SCENES[1], SCENES[2], SCENES[3]])
    with pytest.raises(InputDataError, match=r"export: 2 separate location\(s\) .*43QGA, 44PLQ"):
        A.assemble_dataset(str(tmp_path / "export"), tmp_path / "out", CONFIG)


# --- the command ------------------------------------------------------------------------------


def test_command_assembles_with_profile_and_overrides(tmp_path):
    write_export(str(tmp_path / "export"))
    args = ["data", "assemble", str(tmp_path / "export"), "--out", str(tmp_path / "data"),
            "-p", "small", "-o", f"data.patch_size={SIZE}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"{tmp_path / 'data'}/manifest.json")
    assert load(f"{tmp_path}/data/manifest.json")["split"]["counts"]["train"] > 0
    result = CliRunner().invoke(app, ["data", "assemble", str(tmp_path / "none"), "--out", "x"])
    assert isinstance(result.exception, InputDataError)


# --- through the fake Earth Engine and Cloud Storage ------------------------------------------


@pytest.fixture
def india_export(ee_fake, ee_key, gcs_prefix) -> str:
    """The fake's export of 12 scenes across India, 2x2 patches of 32 px each, in the emulator."""
    bucket, folder = storage.split_gcs(gcs_prefix)
    cfg = EarthEngineConfig(api_url=ee_fake.url, service_account_key=str(ee_key[0]),
                            start="2023-10-01", end="2023-12-31", n_images=12, bucket=bucket,
                            prefix=f"{folder}export", patches_per_side=PER_SIDE,
                            poll_initial_s=1.0, poll_max_s=1.0)  # fmt: skip
    client = C.connect(cfg, sleep=lambda seconds: None)
    plan = X.plan_export(client, cfg, seed=0, patch_size=SIZE)
    assert X.run_export(client, plan, cfg).succeeded == 12
    return f"{gcs_prefix}export"


@service
def test_an_export_in_cloud_storage_assembles_into_cloud_storage(india_export, tmp_path):
    out = india_export.removesuffix("export") + "dataset"
    storage.write_bytes(f"{out}/train/part-00099.tfrecord.gz", b"stale shard of an older run")
    manifest = load(A.assemble_dataset(india_export, out, CONFIG))
    assert storage.exists(f"{out}/manifest.json")
    assert not storage.exists(f"{out}/train/part-00099.tfrecord.gz")
    check_splits(manifest, out)
    assert manifest["filter"]["read"] == 48 and manifest["filter"]["dropped"] == 0
    strata = {s for split in manifest["split"]["strata"].values() for s in split}
    assert len(strata) == 12 and "unknown" not in strata  # one state per scene, from markers
    assert all("row" in s for s in manifest["samples"])  # grids from the markers
    report = validate_dataset(out, tmp_path / "docs")
    assert report.passed, format_report(report)
    files = list_tfrecords(f"{out}/train")
    batch = next(iter(make_dataset(files, patch_size=SIZE, batch_size=4, training=True,
                                   cache_dir=tmp_path / "cache")))  # fmt: skip
    assert batch[0].shape == (4, SIZE, SIZE, 4)
    local = load(A.assemble_dataset(india_export, tmp_path / "local", CONFIG))
    assert local["digest"] == manifest["digest"]  # same bytes wherever they are written
    assert check_dataset(str(tmp_path / "local"))["split"]["counts"] == manifest["split"]["counts"]


@service
def test_the_training_check_accepts_a_dataset_in_cloud_storage(gcs_prefix, tmp_path):
    write_export(str(tmp_path / "export"))
    manifest = load(A.assemble_dataset(str(tmp_path / "export"), f"{gcs_prefix}dataset", CONFIG))
    checked = check_dataset(f"{gcs_prefix}dataset")  # reads the first shards through GCS
    assert checked["digest"] == manifest["digest"]


@service
def test_export_command_can_assemble_right_after(
    ee_fake, ee_key, gcs_prefix, tmp_path, monkeypatch
):
    monkeypatch.setenv("EE_API_URL", ee_fake.url)
    bucket, folder = storage.split_gcs(gcs_prefix)
    args = ["data", "export", "--region", "india", "--start", "2023-10-01", "--end", "2023-10-31",
            "--bucket", bucket, "--prefix", f"{folder}india", "--n-images", "6",
            "--assemble", str(tmp_path / "data"), "-o", f"data.patch_size={SIZE}",
            "-o", f"data.earthengine.patches_per_side={PER_SIDE}",
            "-o", "data.earthengine.poll_initial_s=0.01",
            "-o", f"data.earthengine.service_account_key={ee_key[0]}"]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().endswith(f"{tmp_path / 'data'}/manifest.json")
    manifest = load(f"{tmp_path}/data/manifest.json")
    assert manifest["sources"][0]["uri"] == f"{gcs_prefix}india"
    assert manifest["filter"]["read"] == 6 * PER_SIDE**2
