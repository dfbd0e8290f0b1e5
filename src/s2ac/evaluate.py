"""Evaluation of a correction method and the physics baselines on one dataset split.

Every method is a function from a batch of TOA patches (N, H, W, 4) to SR; each is scored per
image with :func:`s2ac.metrics.image_metrics` and summarised like the paper's Tables 2 and 3.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from s2ac.bands import BAND_NAMES
from s2ac.config import EvaluateConfig
from s2ac.console import track
from s2ac.data.patches import iter_records, list_tfrecords
from s2ac.io.storage import read_bytes
from s2ac.metrics import aggregate, image_metrics
from s2ac.physics.baselines import BASELINES

Method = Callable[[np.ndarray], np.ndarray]


def _batches(dataset_dir: str | Path, split: str, batch_size: int) -> Iterator[tuple]:
    root = str(dataset_dir).rstrip("/")
    size = int(json.loads(read_bytes(f"{root}/manifest.json"))["patch_size"])
    toa, sr, ids = [], [], []
    for path in list_tfrecords(f"{root}/{split}"):
        for record in iter_records(path, size):
            toa.append(record["toa"])
            sr.append(record["sr"])
            ids.append(record["patch_id"])
            if len(toa) == batch_size:
                yield np.stack(toa), np.stack(sr), ids
                toa, sr, ids = [], [], []
    if toa:
        yield np.stack(toa), np.stack(sr), ids


def baseline_methods(names: list[str] | tuple[str, ...]) -> dict[str, Method]:
    """Batch versions of the named baselines (identity, dos, 6s)."""
    unknown = sorted(set(names) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}: choose from {sorted(BASELINES)}")
    return {
        name: (lambda batch, fn=BASELINES[name]: np.stack([fn(image) for image in batch]))
        for name in names
    }


def score_methods(
    dataset_dir: str | Path,
    methods: dict[str, Method],
    split: str = "test",
    config: EvaluateConfig | None = None,
    batch_size: int = 8,
) -> dict[str, pd.DataFrame]:
    """Per-image metrics of every method on ``split`` (one row per image, index patch_id)."""
    rows: dict[str, list[dict]] = {name: [] for name in methods}
    ids: list[str] = []
    for toa, sr, batch_ids in track(_batches(dataset_dir, split, batch_size), f"scoring {split}"):
        ids.extend(batch_ids)
        for name, method in methods.items():
            predicted = method(toa)
            rows[name].extend(
                image_metrics(p, t, config) for p, t in zip(predicted, sr, strict=True)
            )
    if not ids:
        raise ValueError(f"{dataset_dir}: split {split!r} holds no patches")
    return {name: pd.DataFrame(rows[name], index=pd.Index(ids, name="patch_id")) for name in rows}


def identity_baseline(
    dataset_dir: str | Path, split: str = "test", config: EvaluateConfig | None = None
) -> pd.DataFrame:
    """Paper-style table of TOA taken as SR over a split: the floor every correction must beat."""
    scores = score_methods(dataset_dir, baseline_methods(["identity"]), split, config)
    return aggregate(scores["identity"].to_dict("records"), config)


def side_by_side(scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Mean of each metric (overall and per band) per method, one column per method."""
    keys = ["ssim", "psnr", "rmse", "mae", "bias"]
    keys += [f"{metric}_{band}" for metric in ("rmse", "mae", "bias") for band in BAND_NAMES]
    return pd.DataFrame({name: frame[keys].mean() for name, frame in scores.items()})
