"""Benchmark of the data path: synthetic pair generation and the tf.data training input.

Writes ``bench/results/data.json``. Run: ``.venv/bin/python bench/bench_data.py [--patches N]``.
Figures vary up to 2x between runs on shared machines: compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from s2ac.config import load_config
from s2ac.data.input import make_dataset
from s2ac.data.synthetic import synthesize
from s2ac.data.tfrecord import list_tfrecords

RESULTS = Path(__file__).resolve().parent / "results" / "data.json"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--patches", type=int, default=64)
    args = parser.parse_args()
    config = load_config("small", overrides=[f"data.n_patches={args.patches}"]).data
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        synthesize(Path(folder) / "data", config)
        synth_s = time.perf_counter() - start
        files = list_tfrecords(Path(folder) / "data" / "train")
        dataset = make_dataset(files, patch_size=config.patch_size, batch_size=2, training=True)
        timings = []
        for _epoch in range(3):  # epoch 1 reads and decodes, later epochs come from the cache
            start, count = time.perf_counter(), 0
            for toa, _sr in dataset:
                count += int(toa.shape[0])
            timings.append(count / (time.perf_counter() - start))
    result = {
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "patches": args.patches,
        "patch_size": config.patch_size,
        "synth_patches_per_s": round(args.patches / synth_s, 2),
        "synth_seconds": round(synth_s, 1),
        "input_patches_per_s_by_epoch": [round(value, 1) for value in timings],
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
