"""One function per pipeline stage, in the shape KFP components need: paths and plain values in,
plain values out. The components in ``components/`` only unpack their artifacts and call these,
so what runs in a pipeline is the same library code the CLI and ``s2ac run`` use.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from s2ac.config import Config, load_config
from s2ac.console import log
from s2ac.errors import InputDataError
from s2ac.io.storage import read_bytes


def config_for(
    profile: str,
    overrides: list[str],
    tracking_uri: str = "",
    settings: dict[str, Any] | None = None,
) -> Config:
    """The stage's config: a profile, dotted overrides, the typed pipeline parameters
    (``settings``, dotted key to value) and the MLflow server if given."""
    extra = [f"{key}={json.dumps(value)}" for key, value in (settings or {}).items()]
    extra += [f"registry.tracking_uri={tracking_uri}"] if tracking_uri else []
    return load_config(profile, overrides=[*overrides, *extra])


def dataset_digest(dataset_dir: str) -> str:
    """The manifest digest: downstream tasks take it as an input, so their cache keys change
    whenever the data does."""
    return json.loads(read_bytes(f"{dataset_dir.rstrip('/')}/manifest.json"))["digest"]


def synth(out_dir: str, config: Config) -> str:
    from s2ac.data.synthetic import synthesize

    synthesize(out_dir, config.data)
    return dataset_digest(out_dir)


def export(out_dir: str, config: Config) -> str:
    """Earth Engine → Cloud Storage (resumable), then the exported patches → a split dataset."""
    from s2ac.data.assemble import assemble_dataset
    from s2ac.data.earthengine import connect, with_environment
    from s2ac.data.ee_export import plan_export, run_export

    ee_cfg = with_environment(config.data.earthengine, os.environ)
    client = connect(ee_cfg)
    plan = plan_export(client, ee_cfg, seed=config.data.seed, patch_size=config.data.patch_size)
    report = run_export(client, plan, ee_cfg)
    log.info("%d exports finished, %d skipped", report.succeeded, report.skipped)
    assemble_dataset(f"gs://{ee_cfg.bucket}/{ee_cfg.prefix.strip('/')}", out_dir, config.data)
    return dataset_digest(out_dir)


def validate(dataset_dir: str, docs_dir: str, config: Config) -> str:
    """Run the Great Expectations suite; a failure stops the pipeline with the readable report."""
    from s2ac.data.validation import format_report, validate_dataset

    report = validate_dataset(
        dataset_dir, Path(docs_dir), min_finite_share=1.0 - config.data.max_nonfinite_fraction
    )
    summary = format_report(report)
    if not report.passed:
        raise InputDataError(dataset_dir, "failed validation:\n" + summary)
    return summary


def train(dataset_dir: str, model_dir: str, config: Config) -> str:
    """Train into ``model_dir`` (checkpoints; ``best/`` is the model); the MLflow run id."""
    from s2ac.training.train import train as fit

    result = fit(dataset_dir, config, checkpoint_dir=model_dir, resume=True)
    return str(result.run_id)


def evaluate(
    dataset_dir: str, model_dir: str, out_dir: str, run_id: str, config: Config
) -> dict[str, float]:
    """Evaluate the model's ``best/`` networks, log into the training run; the headline means."""
    from s2ac.evaluation.evaluate import evaluate as score
    from s2ac.evaluation.evaluate import log_evaluation
    from s2ac.registry.tracking import start_run

    result = score(dataset_dir, Path(model_dir) / "best", config.evaluate, out_dir)
    with start_run(config.registry, run_id=run_id):
        log_evaluation(result)
    return {
        f"{split}_{method}_{metric}": float(table.loc[metric, method])
        for split, table in result.comparison.items()
        for method in table.columns
        for metric in ("ssim", "psnr", "rmse")
    }


def gate(run_id: str, evaluation_dir: str, dataset_dir: str, config: Config) -> dict[str, Any]:
    """Register as challenger and decide the gate without moving champion (see promote)."""
    from s2ac.registry.versions import register

    registration = register(run_id, evaluation_dir, dataset_dir, config, promote=False)
    return {
        "passed": registration.decision.passed,
        "version": str(registration.version),
        "markdown": registration.decision.markdown(),
    }


def promote(run_id: str, config: Config) -> bool:
    """Promote the version registered for training run ``run_id`` (the gate task's)."""
    from s2ac.registry.versions import promote as move_champion
    from s2ac.registry.versions import version_of_run

    return move_champion(version_of_run(run_id, config), config)


def study_settings(
    storage: str, n_trials: int, lambda_l1_range: list[float], learning_rate_range: list[float]
) -> dict[str, Any]:
    """The tuning pipeline's parameters as config settings (for :func:`config_for`)."""
    return {"tune.storage": storage, "tune.n_trials": n_trials,
            "tune.lambda_l1_range": lambda_l1_range,
            "tune.learning_rate_range": learning_rate_range}  # fmt: skip


def open_study(config: Config) -> str:
    """Create the Optuna study (and its MLflow parent run) before the workers fan out."""
    from s2ac.training.tune import ensure_parent_run
    from s2ac.training.tune import open_study as create

    return ensure_parent_run(create(config), config)


def tune_worker(dataset_dir: str, worker: int, config: Config) -> list[int]:
    from s2ac.training.tune import run_worker

    return run_worker(dataset_dir, config, worker)


def best_params(config: Config) -> dict[str, float]:
    from s2ac.training.tune import summarize

    result = summarize(config)
    return {key: float(value) for key, value in result.best_params.items()}


def record_status(state: str, error: str, pipeline: str, config: Config) -> None:
    """The exit handler: a run in ``<experiment>-pipelines`` tagged with the final state, so a
    failed pipeline is visible where the models are."""
    import mlflow

    from s2ac.registry.tracking import start_run

    experiment = f"{config.registry.experiment}-pipelines"
    registry = config.registry.model_copy(update={"experiment": experiment})
    with start_run(registry, run_name=f"{pipeline}-{state.lower()}"):
        mlflow.set_tags({"pipeline": pipeline, "state": state})
        if error:
            mlflow.log_text(error, "error.txt")
    if state not in ("SUCCEEDED", "SKIPPED"):
        log.error("pipeline %s ended %s: %s", pipeline, state, error)
