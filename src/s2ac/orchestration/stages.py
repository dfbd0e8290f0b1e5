"""One function per stage: the config and typed inputs in, typed outputs back.

Each function owns all of its stage's glue (which library calls, in which order, what is logged
to MLflow, what is written where). The CLI commands, the MLproject entry points (which run the
CLI) and the KFP components in ``components/`` are single calls to these; the local run
(:mod:`s2ac.orchestration.local`) and the KFP pipelines chain them in :data:`TRAINING_ORDER`.

Configuration travels one way: a :class:`Config` resolved from a profile and overrides
(:func:`config_for` in a KFP task, the CLI's option block elsewhere); no stage takes a setting
any other way.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from s2ac.config import Config, dump_config, load_config, redact_secrets, with_changes
from s2ac.console import log
from s2ac.errors import InputDataError
from s2ac.io.storage import read_bytes

if TYPE_CHECKING:
    from s2ac.correction.correct import Correction
    from s2ac.data.earthengine.export import ExportReport
    from s2ac.data.validation import ValidationReport
    from s2ac.evaluation.evaluate import Evaluation
    from s2ac.registry.versions import Registration
    from s2ac.training.train import TrainResult
    from s2ac.training.tune import TuneResult

#: The training run's stages, in order: ``s2ac run`` runs them so and the KFP training pipeline
#: declares the same chain (tests/orchestration compare both with this).
TRAINING_ORDER = ("data", "validate", "train", "evaluate", "register", "promote")


def config_for(profile: str, overrides: list[str]) -> Config:
    """A KFP task's config: the profile plus the run's overrides, nothing else."""
    return load_config(profile, overrides=list(overrides))


@dataclass(frozen=True)
class Dataset:
    """A split dataset (``manifest.json`` + shards) and its manifest digest: downstream KFP tasks
    take the digest as an input, so their cache keys change whenever the data does."""

    path: str
    digest: str


def dataset_at(path: str | Path) -> Dataset:
    path = str(path).rstrip("/")
    return Dataset(path, json.loads(read_bytes(f"{path}/manifest.json"))["digest"])


# --- data ------------------------------------------------------------------------------------


def synth(config: Config, out: str | Path, *, overwrite: bool = False) -> Dataset:
    """The embedded dataset: real surfaces under sampled 6S atmospheres (``data.*``). Replaces
    ``out`` only if it is empty or an s2ac dataset, unless ``overwrite``."""
    from s2ac.data.synthetic import synthesize

    synthesize(out, config.data, overwrite=overwrite)
    return dataset_at(out)


@dataclass(frozen=True)
class Exported:
    plan: str  # the scenes and tasks, printable
    location: str  # gs://bucket/prefix of the exported files
    report: ExportReport | None = None  # None for a dry run or a chip fetch
    chips: tuple[str, ...] = ()
    dataset: Dataset | None = None  # when assembled


def export(
    config: Config, dataset_dir: str | Path | None = None, *, dry_run: bool = False,
    chips_dir: str | Path | None = None,
) -> Exported:  # fmt: skip
    """Earth Engine → Cloud Storage (resumable), then assembled into ``dataset_dir`` if given.
    ``dry_run`` plans only; ``chips_dir`` fetches the chips directly instead of exporting."""
    from s2ac.data.earthengine.client import connect, with_environment
    from s2ac.data.earthengine.export import fetch_chips, format_plan, plan_export, run_export

    ee_cfg = with_environment(config.data.earthengine, os.environ)
    client = connect(ee_cfg)
    plan = plan_export(client, ee_cfg, seed=config.data.seed, patch_size=config.data.patch_size)
    text = format_plan(plan, ee_cfg)
    location = f"gs://{ee_cfg.bucket}/{ee_cfg.prefix.strip('/')}"
    if dry_run:
        return Exported(text, location)
    if chips_dir is not None:
        return Exported(text, location, chips=tuple(fetch_chips(client, plan.tasks, chips_dir,
                                                                ee_cfg)))  # fmt: skip
    report = run_export(client, plan, ee_cfg)
    log.info("%d exports finished, %d skipped", report.succeeded, report.skipped)
    dataset = assemble(config, location, dataset_dir) if dataset_dir is not None else None
    return Exported(text, location, report, dataset=dataset)


def assemble(
    config: Config, export_dir: str, out: str | Path, *, overwrite: bool = False
) -> Dataset:
    """Exported patches → train/val/test shards split by location, with a manifest."""
    from s2ac.data.assemble import assemble_dataset

    assemble_dataset(export_dir, str(out), config.data, overwrite=overwrite)
    return dataset_at(out)


def validate(
    config: Config, dataset: str, docs_dir: str | Path | None, *, require_pass: bool = True
) -> ValidationReport:
    """The Great Expectations suite, its data docs in ``docs_dir``; a failing dataset raises
    (``require_pass``) with the readable report, which stops a pipeline before training."""
    from s2ac.data.validation import format_report, validate_dataset

    minimum = 1.0 - config.data.max_nonfinite_fraction
    report = validate_dataset(dataset, Path(docs_dir) if docs_dir else None,
                              min_finite_share=minimum)  # fmt: skip
    if require_pass and not report.passed:
        raise InputDataError(dataset, "failed validation:\n" + format_report(report))
    return report


# --- model -----------------------------------------------------------------------------------


def train(
    config: Config, dataset: str, checkpoints: str | Path | None = None, *, resume: bool = False
) -> TrainResult:
    """Pix2Pix on ``dataset`` (GPU when there is one); checkpoints every epoch, ``best/`` is the
    model; one MLflow run with the config, the losses and the logged generator."""
    from s2ac.registry.tracking import check_server

    check_server(config.registry)  # before TensorFlow loads: an unreachable server in seconds
    from s2ac.training.train import train as fit

    return fit(dataset, config, checkpoint_dir=checkpoints, resume=resume)


def evaluate(
    config: Config, dataset: str, model: str | Path | None, out: str | Path, *,
    run_id: str | None = None, splits: tuple[str, ...] | list[str] | None = None,
    validation_docs: str | Path | None = None, overwrite: bool = False,
) -> Evaluation:  # fmt: skip
    """Score ``model`` beside the baselines on test and ood into ``out``, and log it: into
    training run ``run_id`` if given (with the validation data docs, so a run shows the data it
    was trained on), else into a new ``evaluate`` run."""
    import mlflow

    from s2ac.evaluation.evaluate import EVALUATED_SPLITS, log_evaluation
    from s2ac.evaluation.evaluate import evaluate as score
    from s2ac.registry.tracking import start_run

    result = score(dataset, model, config.evaluate, out, tuple(splits or EVALUATED_SPLITS),
                   overwrite=overwrite)  # fmt: skip
    with start_run(config.registry, run_id=run_id, run_name=None if run_id else "evaluate"):
        log_evaluation(result)
        if validation_docs is not None and Path(validation_docs).is_dir():
            mlflow.log_artifacts(str(validation_docs), artifact_path="validation")
    return result


def register(
    config: Config, run_id: str, evaluation_dir: str | Path, dataset: str, *,
    promote: bool = False, decision_path: str | Path | None = None,
) -> Registration:  # fmt: skip
    """Register the run's generator as a new version (alias challenger) and decide the quality
    gate on it; the decision
    as Markdown in ``decision_path``. ``champion`` moves only with ``promote`` (otherwise the
    :func:`promote` stage moves it, as the pipelines do after ``dsl.If(passed)``)."""
    from s2ac.registry.versions import register as add_version

    registration = add_version(run_id, evaluation_dir, dataset, config, promote=promote)
    if decision_path is not None:
        target = Path(decision_path)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(registration.decision.markdown())
        temporary.replace(target)
    return registration


def promote(config: Config, run_id: str) -> bool:
    """Move ``champion`` to the version gated for training run ``run_id``; refused (False) if the
    champion changed since the gate decided."""
    from s2ac.registry.versions import promote as move_champion
    from s2ac.registry.versions import version_of_run

    return move_champion(version_of_run(run_id, config), config)


# --- scenes ----------------------------------------------------------------------------------


def correct(
    config: Config, input_uri: str, output: str, model: str | None = None, *,
    units: str = "auto", processing_baseline: str | None = None,
    geometry: dict[str, float | None] | None = None, overwrite: bool = False,
) -> Correction:  # fmt: skip
    """Correct one scene with ``model`` (default: the registry's champion) into a COG + item."""
    from s2ac.correction.correct import correct as correct_scene
    from s2ac.correction.model import DEFAULT_MODEL

    model = model or f"models:/{config.registry.model_name}@{config.registry.champion_alias}"
    if model.startswith(("models:/", "runs:/")) or model == DEFAULT_MODEL:
        from s2ac.registry.tracking import connect

        connect(config.registry)
    return correct_scene(input_uri, output, model=model, config=config.predict, units=units,  # type: ignore[arg-type]
                         processing_baseline=processing_baseline, geometry=geometry,
                         overwrite=overwrite)  # fmt: skip


def pin_model(config: Config, model: str | None = None) -> tuple[str, str]:
    """``model`` (default: the registry's champion) as a fixed ``models:/NAME/VERSION`` URI and
    its version ("" for a model outside the registry): a batch run corrects with one version."""
    from s2ac.correction.model import registry_version
    from s2ac.registry.tracking import connect

    model = model or f"models:/{config.registry.model_name}@{config.registry.champion_alias}"
    if not model.startswith("models:/"):
        return model, ""
    connect(config.registry)
    uri, version, _ = registry_version(model)
    return uri, version or ""


# --- tuning ----------------------------------------------------------------------------------


def tune(
    config: Config, dataset: str, *, workers: int = 1, best_config: str | Path | None = None
) -> TuneResult:
    """The Optuna sweep (``tune.*``) with ``workers`` processes sharing the study; the config
    with the best values is written to ``best_config`` (atomically) if given."""
    from s2ac.training.tune import tune as sweep

    result = sweep(dataset, config, workers=workers, timeout_s=config.tune.timeout_s)
    if best_config is not None:
        target = Path(best_config)
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.tmp")
        temporary.write_text(dump_config(result.config))
        temporary.replace(target)
    return result


def open_study(config: Config) -> str:
    """Create the study and its MLflow parent run before the workers fan out; the run id."""
    from s2ac.training.tune import ensure_parent_run
    from s2ac.training.tune import open_study as create

    return ensure_parent_run(create(config), config)


def tune_worker(config: Config, dataset: str, worker: int) -> list[int]:
    """Run trials of the shared study until its budget is spent; the trial numbers run here."""
    from s2ac.training.tune import run_worker

    return run_worker(dataset, config, worker)


def tuned_overrides(config: Config, overrides: list[str]) -> list[str]:
    """``overrides`` followed by the study's best values, as overrides (later wins): what the
    tuning pipeline hands to training, so the tuned values travel the one way config does."""
    from s2ac.training.tune import summarize

    best = summarize(config).best_params
    return [*overrides, *(f"train.{key}={json.dumps(value)}" for key, value in best.items())]


# --- pipelines -------------------------------------------------------------------------------


def record_status(config: Config, pipeline: str, state: str, error: str = "") -> None:
    """A KFP exit handler's record: a run in ``<experiment>-pipelines`` tagged with the final
    state (and the error), so a failed pipeline is visible where the models are."""
    import mlflow

    from s2ac.registry.tracking import start_run

    experiment = f"{config.registry.experiment}-pipelines"
    registry = with_changes(config, {"registry.experiment": experiment}).registry
    with start_run(registry, run_name=f"{pipeline}-{state.lower()}"):
        mlflow.set_tags({"pipeline": pipeline, "state": state})
        if error:
            mlflow.log_text(redact_secrets(error), "error.txt")
    if state not in ("SUCCEEDED", "SKIPPED"):
        log.error("pipeline %s ended %s: %s", pipeline, state, redact_secrets(error))


def promoted(registration: Registration, moved: bool) -> Registration:
    """``registration`` as it stands after the promote stage."""
    if not moved:
        return registration
    return dataclasses.replace(registration, promoted=True, champion_version=registration.version)
