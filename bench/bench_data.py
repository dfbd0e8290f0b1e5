"""Benchmark of the data path: synthetic pair generation and the tf.data training input.

Writes ``bench/results/data.json``. Run: ``.venv/bin/python bench/bench_data.py [--patches N]``.
The input pipeline's patches/s (TFRecords -> shuffled, augmented batches, as ``s2ac train`` reads
them) beside what training consumes: the demo generator's train steps/s x batch, measured here,
and the paper-width step of ``bench_train_step.py`` (its ``train_step.json`` from the same
``make bench`` run). Target: the pipeline at least 10x faster than training, so it never waits.
Figures vary up to 2x between runs on shared machines: compare only within one run.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

from common import RESULTS, write

from s2ac.config import load_config
from s2ac.data.input import make_dataset
from s2ac.data.synthetic import synthesize
from s2ac.data.tfrecord import list_tfrecords


def demo_training_patches_per_s(files: list[str], patch_size: int, steps: int) -> float:
    """Patches/s the demo profile's generator trains on, fed by the real input pipeline."""
    from s2ac.data.input import manifest_geometry
    from s2ac.data.integrity import read_manifest
    from s2ac.model.pix2pix import build_pix2pix

    train = load_config("demo").train
    dataset_dir = Path(files[0]).parent.parent
    geometry = manifest_geometry(read_manifest(dataset_dir)) or None
    data = make_dataset(
        files, patch_size=patch_size, batch_size=train.batch_size, training=True, geometry=geometry
    ).repeat()
    model = build_pix2pix(train, patch_size)
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)
    start = time.perf_counter()
    model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
    return steps * train.batch_size / (time.perf_counter() - start)


def patches_per_s(dataset: Any) -> float:
    """One pass over ``dataset``: patches per second."""
    start, count = time.perf_counter(), 0
    for toa, _sr in dataset:
        count += int(toa.shape[0])
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    # 192 patches: a train split of 3 shards, as the demo's (168 records); gzip is inflated one
    # thread per shard, so a single-shard split uses one core (measured too, below).
    parser.add_argument("--patches", type=int, default=192)
    parser.add_argument("--train-steps", type=int, default=20)
    args = parser.parse_args()
    config = load_config("small", overrides=[f"data.n_patches={args.patches}"]).data
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        synthesize(Path(folder) / "data", config)
        synth_s = time.perf_counter() - start
        files = list_tfrecords(Path(folder) / "data" / "train")
        dataset = make_dataset(files, patch_size=config.patch_size, batch_size=2, training=True)
        timings = [patches_per_s(dataset) for _epoch in range(3)]  # epoch 1 reads, then cache
        one_shard = patches_per_s(
            make_dataset(files[:1], patch_size=config.patch_size, batch_size=2, training=True)
        )
        demo = demo_training_patches_per_s(files, config.patch_size, args.train_steps)
    consumers = {"demo generator (physics, width 16)": demo}
    paper = RESULTS / "train_step.json"
    if paper.exists():
        rows = json.loads(paper.read_text())["results"]
        rate = next((r["steps_per_s"] * 2 for r in rows if r["case"] == "s2ac" and r["batch"] == 2),
                    None)  # fmt: skip
        if rate:
            consumers["paper U-Net (width 64), batch 2"] = rate
    first_epoch = timings[0]
    result = {
        "patches": args.patches,
        "patch_size": config.patch_size,
        "synth_patches_per_s": round(args.patches / synth_s, 2),
        "synth_seconds": round(synth_s, 1),
        "train_shards": len(files),
        "input_patches_per_s_by_epoch": [round(value, 1) for value in timings],
        "input_first_epoch_one_shard": round(one_shard, 1),
        "training_patches_per_s": {k: round(v, 2) for k, v in consumers.items()},
        "input_over_training_first_epoch": {
            k: round(first_epoch / v, 1) for k, v in consumers.items()
        },
    }
    write("data", result)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
