import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from s2ac.config import DataConfig
from s2ac.data.patches import iter_records
from s2ac.data.synthetic import SPLITS, sample_atmosphere, split_strips, synthesize
from s2ac.physics.lut import Atmosphere, Lut

CONFIG = DataConfig(n_patches=10, patch_size=64, split_buffer_px=32, seed=3, noise_std=0.0005)


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
    draws = [sample_atmosphere(rng, 1.0) for _ in range(400)]
    aot = np.array([draw.aot550 for draw in draws])
    assert aot.min() >= 0.03 and aot.max() <= 1.0
    assert 0.25 < np.median(aot) < 0.45  # lognormal median 0.35
    assert {draw.aerosol_model for draw in draws} == {"continental", "urban", "desert", "maritime"}
    assert all(15 <= draw.solar_zenith <= 60 and draw.view_zenith <= 11 for draw in draws)


def test_manifest_describes_every_sample_and_file(dataset: Path):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["patch_size"] == 64
    assert manifest["sources"][0]["licence"] == "MIT"
    counts = manifest["split"]["counts"]
    assert sum(counts.values()) == len(manifest["samples"]) == 10
    assert set(counts) == set(SPLITS)
    files = sorted(str(p.relative_to(dataset)) for p in dataset.rglob("*.tfrecord.gz"))
    assert sorted(manifest["files"]) == files
    # Every val/test window lies in its strip, with the buffer to the train strip.
    strips = {strip["split"]: strip for strip in manifest["split"]["strips"]}
    for sample in manifest["samples"]:
        strip = strips[sample["split"]]
        assert strip["start"] <= sample["row"] <= strip["stop"] - 64


def test_pairs_follow_the_physics(dataset: Path):
    manifest = json.loads((dataset / "manifest.json").read_text())
    atmospheres = {s["patch_id"]: Atmosphere(**s["atmosphere"]) for s in manifest["samples"]}
    lut = Lut.load()
    records = list(iter_records(str(dataset / "train" / "part-00000.tfrecord.gz"), 64))
    assert len(records) == manifest["split"]["counts"]["train"]
    blue_excess = []
    for record in records:
        toa, sr = record["toa"], record["sr"]
        assert toa.shape == sr.shape == (64, 64, 4)
        assert np.isfinite(toa).all() and sr.min() >= 0 and sr.max() <= 1.2
        # Inverting with the sample's own atmosphere recovers the surface up to noise + rounding.
        recovered = lut.inverse(toa, atmospheres[record["patch_id"]])
        assert np.abs(recovered - sr).mean() < 0.003
        blue_excess.append(float((toa[..., 0] - sr[..., 0]).mean()))
    assert min(blue_excess) > 0.0  # path radiance brightens blue at TOA


def test_same_seed_same_bytes_other_seed_other_data(dataset: Path, tmp_path: Path):
    again = json.loads(synthesize(tmp_path / "again", CONFIG).read_text())
    first = json.loads((dataset / "manifest.json").read_text())
    assert again["files"] == first["files"] and again["digest"] == first["digest"]
    other = json.loads(
        synthesize(tmp_path / "other", CONFIG.model_copy(update={"seed": 4})).read_text()
    )
    assert other["digest"] != first["digest"]
