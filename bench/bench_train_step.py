"""Benchmark: pix2pix train steps per second, with and without XLA (``jit_compile``).

Writes ``bench/results/train_step.json``. Run: ``.venv/bin/python bench/bench_train_step.py``.
Random 256x256x4 batches of 2 (the paper's batch); the first steps (tracing/compiling) are not
timed. Figures vary up to 2x between runs on shared machines: compare only within one run.
"""

from __future__ import annotations

import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from s2ac.config import TrainConfig
from s2ac.model.pix2pix import build_pix2pix

RESULTS = Path(__file__).resolve().parent / "results" / "train_step.json"
WARMUP, TIMED = 3, 15


def steps_per_second(filters: int, jit_compile: bool) -> float:
    config = TrainConfig(
        generator_filters=filters, discriminator_filters=filters, jit_compile=jit_compile
    )
    model = build_pix2pix(config)
    rng = np.random.default_rng(0)
    toa = rng.uniform(0, 0.4, (2, 256, 256, 4)).astype(np.float32)
    data = tf.data.Dataset.from_tensors((toa, toa * 0.9)).repeat()
    model.fit(data, steps_per_epoch=WARMUP, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=TIMED, epochs=1, verbose=0)
    return TIMED / (time.perf_counter() - start)


def main() -> None:
    rows = []
    for filters in (16, 64):
        for jit in (False, True):
            rate = steps_per_second(filters, jit)
            rows.append({"filters": filters, "jit_compile": jit, "steps_per_s": round(rate, 3)})
            print(rows[-1], flush=True)
    machine = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "gpus": len(tf.config.list_physical_devices("GPU")),
    }
    result = {"machine": machine, "batch": 2, "image": [256, 256, 4], "results": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
