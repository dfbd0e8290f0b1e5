"""Evaluation of a correction method and the physics baselines on one dataset split.

Every method is a function from a batch of TOA patches (N, H, W, 4) to SR; each is scored per
image with :func:`s2ac.metrics.image_metrics` and summarised like the paper's Tables 2 and 3.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


def load_generator(model: str | Path) -> Method:
    """A batch predictor from a checkpoint folder, a ``.keras`` file or an MLflow model URI."""
    import keras

    import s2ac.model.pix2pix  # noqa: F401 - registers the custom classes for loading

    text = str(model)
    if "://" in text or text.startswith("models:/") or text.startswith("runs:/"):
        import mlflow.pyfunc  # models are logged as pyfunc (s2ac.pyfunc.GeneratorModel)

        pyfunc_model = mlflow.pyfunc.load_model(text)
        return lambda toa: np.asarray(pyfunc_model.predict(toa))
    path = Path(text)
    path = path / "generator.keras" if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no generator (train first or pass a model URI)")
    network = keras.saving.load_model(path)
    return lambda toa: np.asarray(network.predict(toa, verbose=0, batch_size=8))


def evaluate(
    dataset_dir: str | Path,
    model: str | Path | None,
    config: EvaluateConfig,
    out_dir: str | Path,
    split: str = "test",
) -> dict[str, Any]:
    """Score the model (if given) and the baselines; write tables, figures and ``report.md``."""
    from s2ac.figures import density_scatter, metric_histograms, sample_grid
    from s2ac.report import write_report

    out = Path(out_dir)
    methods = ({"pix2pix": load_generator(model)} if model else {}) | baseline_methods(
        config.baselines
    )
    scores = score_methods(dataset_dir, methods, split, config)
    comparison = side_by_side(scores)
    out.mkdir(parents=True, exist_ok=True)
    for name, frame in scores.items():
        frame.to_csv(out / f"per_image_{name}.csv")
    comparison.to_csv(out / "comparison.csv")
    headline = next(iter(methods))
    toa, sr, _ = next(_batches(dataset_dir, split, 3))
    prediction = methods[headline](toa)
    figures = {
        "histograms": metric_histograms(scores, config.ssim_good, config.psnr_good),
        "samples": sample_grid(toa, sr, prediction),
        "scatter": density_scatter(sr, prediction),
    }
    paths = {}
    for name, figure in figures.items():
        figure.savefig(out / f"{name}.png", dpi=90)
        paths[name] = f"{name}.png"
    title = f"s2ac evaluation on {split} of {dataset_dir} ({headline} first)"
    report = write_report(out, scores, comparison, config, paths, title)
    return {"scores": scores, "comparison": comparison, "report": report, "figures": figures}


def log_evaluation(result: dict[str, Any], out_dir: str | Path, split: str = "test") -> None:
    """Log the means of every method as metrics (``<split>_<method>_<metric>``) and the report
    folder as artifacts of the active MLflow run."""
    import mlflow

    metrics = {
        f"{split}_{method}_{metric}": float(value)
        for method, column in result["comparison"].items()
        for metric, value in column.items()
    }
    mlflow.log_metrics(metrics)
    mlflow.log_artifacts(str(out_dir), artifact_path="evaluation")
