"""Memory of scene correction is bounded: a strip of tiles, not the scene.

Stated bound: correcting a 2000 x 2000 scene takes under 1.5 GB peak RSS, everything included
(TensorFlow and the model ~0.8 GB, strip buffers, GDAL's 64 MB block cache). Measured here:
1.04 GB. A full 10980 x 10980 tile is measured by ``bench/bench_correct.py`` (bound: 4 GB).
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
BOUND_MB = 1500

PROBE = """
import json, resource, sys
from s2ac.correction.correct import correct
result = correct(sys.argv[1], sys.argv[2], model=sys.argv[3])
print(json.dumps({"tiles": result.tiles,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_a_2000_px_scene_is_corrected_within_the_stated_memory_bound(tmp_path: Path):
    rng = np.random.default_rng(0)
    scene = write_raster(tmp_path / "scene.tif", rng.uniform(0.02, 0.3, (2000, 2000, 4)),
                         crs="EPSG:32632", transform=from_origin(5e5, 5e6, 10, 10))  # fmt: skip
    model = tmp_path / "generator.keras"
    build_generator(256, 8, seed=0).save(model)
    answer = subprocess.run(
        [sys.executable, "-c", PROBE, str(scene), str(tmp_path / "sr.tif"), str(model)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert answer.returncode == 0, answer.stderr[-3000:]
    measured = json.loads(answer.stdout.strip().splitlines()[-1])
    assert measured["tiles"] == 11 * 11  # 256 px tiles, 192 px apart
    assert measured["peak_mb"] < BOUND_MB, measured
