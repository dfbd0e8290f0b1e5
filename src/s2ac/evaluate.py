"""Evaluation of predictions and baselines on a dataset split (tables like the paper's 2 and 3)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from s2ac.config import EvaluateConfig
from s2ac.console import track
from s2ac.data.patches import iter_records, list_tfrecords
from s2ac.io.storage import read_bytes
from s2ac.metrics import aggregate, image_metrics


def identity_baseline(
    dataset_dir: str | Path, split: str = "test", config: EvaluateConfig | None = None
) -> pd.DataFrame:
    """Metrics of TOA taken as SR over a split: the floor every correction must beat."""
    root = str(dataset_dir).rstrip("/")
    size = int(json.loads(read_bytes(f"{root}/manifest.json"))["patch_size"])
    rows = []
    for path in list_tfrecords(f"{root}/{split}"):
        for record in track(iter_records(path, size), f"identity baseline {Path(path).name}"):
            rows.append(image_metrics(record["toa"], record["sr"], config))
    return aggregate(rows, config)
