"""Memory of scene correction is bounded: a strip of tiles, not the scene.

Stated bound: correcting a 2000 x 2000 scene takes under 2.5 GB peak RSS, everything included
(what TensorFlow and the model take varies by machine: 1.04-1.18 GB here alone, 1.57 GB in a CI
run on a busy machine). A full 10980 x 10980 tile, 30 times the pixels, is measured by
``bench/bench_correct.py``: 1.94 GB (bound: 4 GB), against 1.49 GB for 2048 x 2048 at the same
width: the scene itself is never held (one float32 copy of a full tile alone is 1.9 GB).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from rasterio.transform import from_origin

from s2ac.io.raster import write_raster
from s2ac.model.generator import build_generator

pytestmark = pytest.mark.slow
BOUND_MB = 2500

PROBE = """
import json, resource, sys
from s2ac.correction.correct import correct
result = correct(sys.argv[1], sys.argv[2], model=sys.argv[3])
print(json.dumps({"tiles": result.tiles,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def peak(tmp_path: Path, height: int, width: int, model: Path) -> dict:
    rng = np.random.default_rng(0)
    data = rng.uniform(0.02, 0.3, (height, width, 4))
    scene = write_raster(tmp_path / f"scene{height}.tif", data, crs="EPSG:32632",
                         transform=from_origin(5e5, 5e6, 10, 10))  # fmt: skip
    answer = subprocess.run(
        [sys.executable, "-c", PROBE, str(scene), str(tmp_path / f"sr{height}.tif"), str(model)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    return json.loads(answer.stdout.strip().splitlines()[-1])


def test_a_2000_px_scene_is_corrected_within_the_stated_memory_bound(tmp_path: Path):
    model = tmp_path / "generator.keras"
    build_generator(256, 8, seed=0).save(model)
    big = peak(tmp_path, 2000, 2000, model)
    assert big["tiles"] == 11 * 11  # 256 px tiles, 192 px apart
    assert big["peak_mb"] < BOUND_MB, big
