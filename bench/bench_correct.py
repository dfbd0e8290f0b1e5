"""Benchmark: whole-scene correction (``s2ac correct``) in Mpx/s, peak memory, full-tile time.

Writes ``bench/results/correct.json``. Run: ``.venv/bin/python bench/bench_correct.py``
(``--quick`` for a small smoke: a 512 px scene, no full tile).

Two generators: the demo champion's architecture (``make demo``: the physics generator, 16
filters, dark-object prior) and the paper's U-Net (64 filters). Speed does not depend on the
weights, so both are built with random weights rather than trained. The full tile (10980 px,
25 % overlap) is run for the demo champion; for the paper's U-Net (26 min here) it is
extrapolated from the 2048 px scene by tile count unless ``--full-paper``. GFLOP/s counts the
generator's convolutions per tile (``bench_train_step.conv_flops``) over the whole run's time,
as a share of the float32 matmul peak in ``train_step.json`` (same ``make bench`` run).
Each run is its own process, so its peak RSS (``ru_maxrss``)
is the memory ``s2ac correct`` needs: model, strip buffers and GDAL's block cache together.
Scenes are random reflectance written as GeoTIFF once per run of the benchmark. Machines here
are shared and noisy: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from common import write

RESULTS = Path(__file__).resolve().parent / "results" / "correct.json"
FULL_TILE = 10980  # px: one Sentinel-2 MGRS tile at 10 m
DEMO, PAPER = "demo champion (physics, 16 filters)", "paper U-Net (64 filters)"
#: What the physics generator needs beside the image (a scene GeoTIFF carries no metadata).
GEOMETRY = {"solar_zenith": 40.0, "view_zenith": 5.0, "relative_azimuth": 100.0, "satellite": 0.0}


def build(name: str) -> Any:
    from s2ac.model.generator import build_generator
    from s2ac.model.physics_generator import build_physics_generator

    if name == DEMO:
        return build_physics_generator(256, 16, prior="dark_object", seed=0)
    return build_generator(256, 64, seed=0)


def write_scene(path: Path, size: int) -> None:
    """A ``size`` x ``size`` reflectance GeoTIFF, written in strips (a full tile is 1.9 GB)."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(0)
    profile = {
        "driver": "GTiff", "width": size, "height": size, "count": 4, "dtype": "float32",
        "crs": "EPSG:32632", "transform": from_origin(600000, 5100000, 10, 10),
        "tiled": True, "blockxsize": 512, "blockysize": 512, "bigtiff": "IF_SAFER",
    }  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        for top in range(0, size, 512):
            rows = min(512, size - top)
            block = rng.uniform(0.02, 0.3, (4, rows, size)).astype(np.float32)
            dst.write(block, window=rasterio.windows.Window(0, top, size, rows))
        dst.descriptions = ("B2", "B3", "B4", "B8")


def one(model: str, scene: str, overlap: int, out: str) -> dict[str, float]:
    """Correct once in this process; the seconds (model load included, imports not), Mpx/s and
    this process's peak RSS."""
    import keras  # noqa: F401 - TensorFlow's import (~10 s) is not scene correction

    from s2ac.config import PredictConfig
    from s2ac.correction.correct import correct

    start = time.perf_counter()
    result = correct(scene, out, model=model, config=PredictConfig(overlap=overlap),
                     geometry=GEOMETRY, overwrite=True)  # fmt: skip
    seconds = time.perf_counter() - start
    return {
        "seconds": round(seconds, 2),
        "mpx_per_s": round(result.height * result.width / 1e6 / seconds, 3),
        "tiles": result.tiles,
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }


def run(model: Path, scene: Path, overlap: int, folder: Path) -> dict[str, float]:
    command = [sys.executable, __file__, "--one", str(model), str(scene), str(overlap),
               str(folder / "out.tif")]  # fmt: skip
    answer = subprocess.run(command, capture_output=True, text=True, check=False)
    if answer.returncode:
        raise RuntimeError(f"benchmark run failed:\n{answer.stderr[-3000:]}")
    return json.loads(answer.stdout.strip().splitlines()[-1])


def gflops(name: str, row: dict[str, Any], peak: float | None) -> dict[str, float]:
    """The run's achieved GFLOP/s (convolutions of every tile over the whole time)."""
    from bench_train_step import conv_flops

    achieved = conv_flops(build(name)) * row["tiles"] / row["seconds"] / 1e9
    share = {"share_of_f32_peak": round(achieved / peak, 3)} if peak else {}
    return {"gflops": round(achieved, 1), **share}


def main(quick: bool, full_paper: bool) -> None:
    side = 512 if quick else 2048
    train_step = RESULTS.with_name("train_step_quick.json" if quick else "train_step.json")
    record = json.loads(train_step.read_text()) if train_step.exists() else {}
    peak = record.get("matmul_gflops", {}).get("float32")
    rows = []
    with tempfile.TemporaryDirectory(prefix="s2ac-bench-") as tmp:
        folder = Path(tmp)
        scene = folder / f"scene{side}.tif"
        write_scene(scene, side)
        models = {}
        for index, name in enumerate((DEMO, PAPER)):
            models[name] = folder / f"generator{index}.keras"
            build(name).save(models[name])
            for overlap in (0, 64):
                row = {"generator": name, "scene_px": side, "overlap_px": overlap,
                       **run(models[name], scene, overlap, folder)}  # fmt: skip
                rows.append(row | gflops(name, row, peak))
                print(rows[-1], flush=True)
        if not quick:
            tile = folder / "tile.tif"
            write_scene(tile, FULL_TILE)
            for name in (DEMO, PAPER) if full_paper else (DEMO,):
                row = {"generator": name, "scene_px": FULL_TILE, "overlap_px": 64,
                       **run(models[name], tile, 64, folder)}  # fmt: skip
                rows.append(row | gflops(name, row, peak))
                print(rows[-1], flush=True)
            if not full_paper:  # the 2048 px run's seconds per tile, times a full tile's tiles
                small = next(r for r in rows if r["generator"] == PAPER and r["overlap_px"] == 64)
                tiles = next(r["tiles"] for r in rows if r["scene_px"] == FULL_TILE)
                rows.append({"generator": PAPER, "scene_px": FULL_TILE, "overlap_px": 64,
                             "seconds": round(small["seconds"] * tiles / small["tiles"], 1),
                             "tiles": tiles, "extrapolated_from_px": side})  # fmt: skip
                print(rows[-1], flush=True)
    write("correct_quick" if quick else "correct", {"results": rows})


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 px scene, no full tile")
    parser.add_argument("--full-paper", action="store_true",
                        help="also run the paper U-Net on a full tile (~26 min here)")  # fmt: skip
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "SCENE", "OVERLAP", "OUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.one:
        model, scene, overlap, out = args.one
        print(json.dumps(one(model, scene, int(overlap), out)))
    else:
        main(args.quick, args.full_paper)
