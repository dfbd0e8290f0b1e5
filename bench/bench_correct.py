"""Benchmark: whole-scene correction (``s2ac correct``) in Mpx/s, peak memory, full-tile time.

Writes ``bench/results/correct.json``. Run: ``.venv/bin/python bench/bench_correct.py``
(``--quick`` for a small smoke: a 512 px scene, no full tile).

Two generators: the demo profile's U-Net (16 filters; the registered champion's architecture)
and the paper's (64 filters). Speed does not depend on the weights, so both are built with
random weights rather than trained. Each run is its own process, so its peak RSS (``ru_maxrss``)
is the memory ``s2ac correct`` needs: model, strip buffers and GDAL's block cache together.
Scenes are random reflectance written as GeoTIFF once per run of the benchmark. Machines here
are shared and noisy: compare figures from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "correct.json"
FULL_TILE = 10980  # px: one Sentinel-2 MGRS tile at 10 m
GENERATORS = {"demo (16 filters)": 16, "paper (64 filters)": 64}


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
                     overwrite=True)  # fmt: skip
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


def machine() -> dict[str, object]:
    import tensorflow as tf

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).parent, check=False,
    ).stdout.strip()  # fmt: skip
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text()
                .splitlines() if line.startswith("model name")), platform.processor())  # fmt: skip
    return {"cpus": os.cpu_count(), "cpu": cpu, "python": platform.python_version(),
            "tensorflow": tf.__version__, "gpus": len(tf.config.list_physical_devices("GPU")),
            "commit": commit, "date": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip


def main(quick: bool) -> None:
    from s2ac.model.generator import build_generator

    side = 512 if quick else 2048
    rows = []
    with tempfile.TemporaryDirectory(prefix="s2ac-bench-") as tmp:
        folder = Path(tmp)
        scene = folder / f"scene{side}.tif"
        write_scene(scene, side)
        for name, filters in GENERATORS.items():
            model = folder / f"generator{filters}.keras"
            build_generator(256, filters, seed=0).save(model)
            for overlap in (0, 64):
                row = {"generator": name, "scene_px": side, "overlap_px": overlap,
                       **run(model, scene, overlap, folder)}  # fmt: skip
                rows.append(row)
                print(row, flush=True)
        if not quick:
            tile = folder / "tile.tif"
            write_scene(tile, FULL_TILE)
            for name, filters in GENERATORS.items():
                model = folder / f"generator{filters}.keras"
                row = {"generator": name, "scene_px": FULL_TILE, "overlap_px": 64,
                       **run(model, tile, 64, folder)}  # fmt: skip
                rows.append(row)
                print(row, flush=True)
    result = {"machine": machine(), "results": rows}
    path = RESULTS.with_name("correct_quick.json") if quick else RESULTS
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 px scene, no full tile")
    parser.add_argument("--one", nargs=4, metavar=("MODEL", "SCENE", "OVERLAP", "OUT"),
                        help=argparse.SUPPRESS)  # fmt: skip
    args = parser.parse_args()
    if args.one:
        model, scene, overlap, out = args.one
        print(json.dumps(one(model, scene, int(overlap), out)))
    else:
        main(args.quick)
