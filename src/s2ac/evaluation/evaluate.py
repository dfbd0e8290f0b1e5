"""Evaluation of a model beside the five baselines on the ``test`` and ``ood`` splits.

Every method is a batch function ``(toa, patch_ids) -> sr`` (:mod:`s2ac.evaluation.baselines`);
each is scored per image with :func:`s2ac.evaluation.metrics.image_metrics`, summarised per split
with :func:`s2ac.evaluation.metrics.summarize` and reported like the paper's Tables 2 and 3.
``test`` shares the training data's scene and atmosphere distribution; ``ood`` shares neither,
so a model that only learned the training scene shows it there. Both are scored separately and
every output carries both (a split the dataset lacks is named, with the reason, in
``evaluation.json``).

The evaluation folder is written to a staging name and renamed, with ``evaluation.json`` (dataset
digest, model, splits, the linear baseline's coefficients) as the record the registry checks.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from s2ac.config import EvaluateConfig
from s2ac.console import log, track
from s2ac.data.input import manifest_geometry
from s2ac.data.integrity import read_manifest, verify_dataset
from s2ac.data.tfrecord import iter_records, list_tfrecords
from s2ac.errors import InputDataError
from s2ac.evaluation.baselines import (
    ALL_BASELINES,
    NON_ORACLE,
    LinearMap,
    Method,
    oracle_atmospheres,
    physics_method,
)
from s2ac.evaluation.metrics import aggregate, image_metrics, summarize
from s2ac.io.outputs import check_replaceable
from s2ac.io.storage import read_bytes

MODEL_COLUMN = "pix2pix"
EVALUATED_SPLITS = ("test", "ood")
RECORD = "evaluation.json"
#: Metrics logged to MLflow per split and method (the rest stay in the CSV files).
LOGGED_KEYS = ["ssim", "psnr", "rmse", "mae", "rmse_pooled", "mae_pooled"] + [
    f"{metric}_{band}" for metric in ("rmse", "rel_rmse") for band in ("B2", "B3", "B4", "B8")
]
CONVENTIONS = (
    "SSIM: Gaussian 11x11 window (sigma 1.5), data_range 1.0 on reflectance, mean of the 4 bands. "
    "PSNR: over all bands, data_range 1.0, capped at 100 dB. Errors are prediction - truth. "
    "RMSE, MAE, bias and the per-band values are means of per-image values; *_pooled are over "
    "all pixels of the split; rel_rmse_<band> = pooled RMSE / mean true SR of the band (SR uses "
    "a small part of data_range 1.0)."
)


def _batches(
    dataset_dir: str | Path, split: str, batch_size: int, size: int | None = None
) -> Iterator[tuple[np.ndarray, np.ndarray, list[str]]]:
    root = str(dataset_dir).rstrip("/")
    size = size or int(read_manifest(root)["patch_size"])
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


def split_status(dataset_dir: str | Path, manifest: dict[str, Any], split: str) -> str | None:
    """None if ``split`` holds patches, else why it is absent (for reports)."""
    counts = (manifest.get("split") or {}).get("counts") or {}
    if int(counts.get(split, 0) or 0) > 0:
        return None
    if split == "ood":
        return (
            f"absent: dataset {manifest.get('name', '?')!r} has no ood split (the embedded "
            "dataset has one; Earth Engine data does not yet)"
        )
    return f"absent: dataset {manifest.get('name', '?')!r} has no {split} patches"


def fit_linear(dataset_dir: str | Path, manifest: dict[str, Any] | None = None) -> LinearMap:
    """The ``linear`` baseline fitted on the train split (never on test or ood)."""
    size = int((manifest or read_manifest(dataset_dir))["patch_size"])
    pairs = ((toa, sr) for toa, sr, _ in _batches(dataset_dir, "train", 16, size))
    return LinearMap.fit(track(pairs, "fitting the linear baseline on train"))


def baseline_methods(
    names: Sequence[str], dataset_dir: str | Path | None = None, manifest: dict | None = None
) -> tuple[dict[str, Method], dict[str, Any]]:
    """Batch methods of the named baselines and notes on them (linear coefficients, oracle
    availability). ``linear`` and ``oracle`` need the dataset."""
    unknown = sorted(set(names) - set(ALL_BASELINES))
    if unknown:
        raise ValueError(f"unknown baselines {unknown}: choose from {list(ALL_BASELINES)}")
    methods: dict[str, Method] = {}
    notes: dict[str, Any] = {}
    for name in names:
        if name in ("linear", "oracle") and dataset_dir is None:
            raise ValueError(f"baseline {name!r} needs the dataset")
        if name == "linear":
            linear = fit_linear(dataset_dir, manifest)
            methods[name], notes["linear"] = linear, linear.to_dict()
        elif name == "oracle":
            oracle, notes["oracle"] = oracle_atmospheres(
                manifest or read_manifest(dataset_dir), dataset_dir
            )
            if oracle is not None:
                methods[name] = oracle
        else:
            methods[name] = physics_method(name)
    return methods, notes


def _refuse_non_finite(
    predicted: np.ndarray, truth: np.ndarray, method: str, split: str, ids: list[str]
) -> None:
    """A prediction with NaN or inf where the truth is finite is an error, not a score: capped
    or skipped, an all-NaN model would look perfect (PSNR 100 dB) to the gate."""
    bad = ~np.isfinite(predicted) & np.isfinite(truth)
    if bad.any():
        first = int(np.argmax(bad.reshape(len(bad), -1).any(axis=1)))
        raise InputDataError(
            f"{method} on {split}",
            f"{int(bad.sum())} non-finite predicted values (NaN or inf), first in patch "
            f"{ids[first]!r}; a model that outputs NaN was trained on bad data or diverged",
            "check the training run's losses (train stops on a non-finite loss)",
        )  # fmt: skip


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
            if getattr(method, "uses_truth", False):  # the oracle knows the surroundings
                predicted = np.asarray(method(toa, batch_ids, sr))
            else:
                predicted = np.asarray(method(toa, batch_ids))
            _refuse_non_finite(predicted, sr, name, split, batch_ids)
            rows[name].extend(
                image_metrics(p, t, config) for p, t in zip(predicted, sr, strict=True)
            )
    if not ids:
        raise ValueError(f"{dataset_dir}: split {split!r} holds no patches")
    return {name: pd.DataFrame(rows[name], index=pd.Index(ids, name="patch_id")) for name in rows}


def side_by_side(scores: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One split's summary (:func:`s2ac.evaluation.metrics.summarize`), one column per method."""
    return pd.DataFrame({name: summarize(frame) for name, frame in scores.items()})


def identity_baseline(
    dataset_dir: str | Path, split: str = "test", config: EvaluateConfig | None = None
) -> pd.DataFrame:
    """Paper-style table of TOA taken as SR over a split: the floor every correction must beat."""
    methods, _ = baseline_methods(["identity"])
    scores = score_methods(dataset_dir, methods, split, config)
    return aggregate(scores["identity"].to_dict("records"), config)


def load_generator(model: str | Path, geometry: Mapping[str, Any] | None = None) -> Method:
    """A batch predictor from a checkpoint folder, a ``.keras`` file or an MLflow model URI.

    A generator that takes the acquisition geometry gets each sample's from ``geometry``
    (patch id -> values, :func:`s2ac.data.input.manifest_geometry`)."""
    import keras

    from s2ac.model import physics_generator, pix2pix  # noqa: F401 - register classes for loading

    text = str(model)
    if "://" in text or text.startswith("models:/") or text.startswith("runs:/"):
        import mlflow.pyfunc  # models are logged as pyfunc (s2ac.registry.pyfunc.GeneratorModel)

        pyfunc_model = mlflow.pyfunc.load_model(text)
        schema = pyfunc_model.metadata.get_input_schema()
        needs = schema is not None and "geometry" in (schema.input_names() or [])
        predict = pyfunc_model.predict
    else:
        path = Path(text)
        path = path / "generator.keras" if path.is_dir() else path
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no generator (train first or pass a model URI)")
        network = keras.saving.load_model(path)
        needs = isinstance(network.input, dict)

        def predict(inputs: Any) -> Any:
            return network.predict(inputs, verbose=0, batch_size=8)

    if not needs:
        return lambda toa, ids: np.asarray(predict(toa))

    def with_geometry(toa: np.ndarray, ids: list[str | None]) -> np.ndarray:
        missing = [i for i in ids if i not in (geometry or {})]
        if missing:
            raise InputDataError(
                str(model), f"needs each sample's geometry; none for patch {missing[0]!r}",
                "evaluate it on a dataset whose manifest records the atmospheres",
            )  # fmt: skip
        rows = np.asarray([geometry[i] for i in ids], dtype=np.float32)  # type: ignore[index]
        return np.asarray(predict({"toa": toa, "geometry": rows}))

    return with_geometry


@dataclass(frozen=True)
class Evaluation:
    """What :func:`evaluate` wrote: per-split scores and summaries, the record, the report."""

    out_dir: Path
    scores: dict[str, dict[str, pd.DataFrame]]  # split -> method -> per-image metrics
    comparison: dict[str, pd.DataFrame]  # split -> metric x method
    record: dict[str, Any]  # evaluation.json
    report: Path

    @property
    def splits(self) -> list[str]:
        return list(self.comparison)


def evaluate(
    dataset_dir: str | Path,
    model: str | Path | None,
    config: EvaluateConfig,
    out_dir: str | Path,
    splits: Sequence[str] = EVALUATED_SPLITS,
    *,
    overwrite: bool = False,
) -> Evaluation:
    """Score the model (if given) and the baselines on each split; write tables, figures,
    ``report.md`` and ``evaluation.json`` into ``out_dir``, replaced as a whole if it is empty or
    an earlier evaluation (anything else only with ``overwrite``)."""
    from s2ac.evaluation.figures import (
        density_scatter,
        metric_histograms,
        rmse_by_band,
        sample_grid,
    )
    from s2ac.evaluation.report import write_report

    out = Path(out_dir)
    check_replaceable(out, "s2ac evaluation", _is_evaluation, overwrite)
    manifest = read_manifest(dataset_dir)
    baselines, notes = baseline_methods(config.baselines, dataset_dir, manifest)
    generator = load_generator(model, manifest_geometry(manifest)) if model else None
    methods = ({MODEL_COLUMN: generator} if generator else {}) | baselines
    missing = {s: why for s in splits if (why := split_status(dataset_dir, manifest, s))}
    present = [s for s in splits if s not in missing]
    if not present:
        raise InputDataError(str(dataset_dir), f"none of the splits {list(splits)} holds patches")
    # Every shard read is checked against the manifest's sha256 (train: the linear fit).
    verify_dataset(str(dataset_dir), [*present, *(["train"] if "linear" in baselines else [])],
                   manifest)  # fmt: skip
    for split, why in missing.items():
        log.warning("split %s: %s", split, why)

    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        scores, comparison, figures = {}, {}, {}
        for split in present:
            scores[split] = score_methods(dataset_dir, methods, split, config)
            comparison[split] = side_by_side(scores[split])
            for name, frame in scores[split].items():
                frame.to_csv(staging / f"per_image_{split}_{name}.csv")
            if not config.figures:
                continue
            toa, sr, ids = next(_batches(dataset_dir, split, 3))
            predicted = np.asarray(methods[next(iter(methods))](toa, ids))
            figures |= {
                f"histograms_{split}": metric_histograms(
                    scores[split], config.ssim_good, config.psnr_good
                ),
                f"samples_{split}": sample_grid(toa, sr, predicted),
                f"scatter_{split}": density_scatter(sr, predicted),
            }
        if config.figures:
            figures["rmse_by_band"] = rmse_by_band(comparison)
        write_comparison(comparison, staging / "comparison.csv")
        paths = {}
        for name, figure in figures.items():
            figure.savefig(staging / f"{name}.png", dpi=80)
            paths[name] = f"{name}.png"
        record = {
            "dataset": str(dataset_dir),
            "dataset_name": manifest.get("name"),
            "dataset_digest": manifest.get("digest"),
            "model": str(model) if model else None,
            "model_column": MODEL_COLUMN if model else None,
            "methods": list(methods),
            "splits": present,
            "missing_splits": missing,
            "n_images": {split: len(next(iter(scores[split].values()))) for split in present},
            "baselines": notes,
            "non_oracle_baselines": [b for b in NON_ORACLE if b in methods],
            "conventions": CONVENTIONS,
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / "linear_coefficients.json").write_text(json.dumps(notes.get("linear"), indent=1))
        title = f"s2ac evaluation of {record['model'] or 'the baselines'} on {dataset_dir}"
        report = write_report(staging, scores, comparison, record, config, paths, title)
        (staging / RECORD).write_text(json.dumps(record, indent=1))  # written last
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return Evaluation(out, scores, comparison, record, out / report.name)


def _is_evaluation(folder: Path) -> bool:
    return "splits" in json.loads((folder / RECORD).read_text())


def write_comparison(comparison: dict[str, pd.DataFrame], path: Path) -> None:
    """``comparison.csv``: one row per metric, one column per ``<split>/<method>``."""
    table = pd.concat(comparison, axis=1)
    table.columns = [f"{split}/{method}" for split, method in table.columns]
    table.to_csv(path)


def read_evaluation(evaluation_dir: str | Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame]]:
    """``evaluation.json`` and the per-split comparison tables of an evaluation folder."""
    import io

    root = str(evaluation_dir).rstrip("/")
    try:
        record = json.loads(read_bytes(f"{root}/{RECORD}"))
        table = pd.read_csv(io.BytesIO(read_bytes(f"{root}/comparison.csv")), index_col=0)
    except FileNotFoundError as exc:
        raise InputDataError(
            root, f"incomplete evaluation folder ({exc})", "run `s2ac evaluate` again"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputDataError(
            root, f"unreadable evaluation ({exc})", "run `s2ac evaluate` again"
        ) from None
    comparison: dict[str, pd.DataFrame] = {}
    for column in table.columns:
        split, _, method = column.partition("/")
        comparison.setdefault(split, pd.DataFrame(index=table.index))[method] = table[column]
    return record, comparison


def headline_metrics(result: Evaluation) -> dict[str, float]:
    """The headline means as ``<split>_<method>_<metric>`` (what MLflow and KFP show)."""
    return {
        f"{split}_{method}_{metric}": float(value)
        for split, table in result.comparison.items()
        for method, column in table.items()
        for metric, value in column.items()
        if metric in LOGGED_KEYS and np.isfinite(value)
    }


def log_evaluation(result: Evaluation) -> None:
    """Log the headline means and the evaluation folder to the active MLflow run."""
    import mlflow

    mlflow.log_metrics(headline_metrics(result))
    mlflow.log_artifacts(str(result.out_dir), artifact_path="evaluation")
