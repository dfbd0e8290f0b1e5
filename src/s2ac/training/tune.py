"""Optuna sweep of the L1 weight λ and the learning rate (optionally β1 and generator width).

One study lives in a database (``tune.storage``: SQLite by default, Postgres in the cluster), so it
is resumable by name and any number of worker processes, on one machine or in a KFP
``ParallelFor``, share it. ``tune.n_trials`` is the study's total budget, counted over every worker
and every resumed session. Each trial trains for ``tune.epochs_per_trial`` epochs, reports the
validation L1 after every epoch to the pruner, and is an MLflow child run of the study's parent
run; the parent gets the best parameters and the optimisation-history and importance plots.
"""

from __future__ import annotations

import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import keras
import mlflow
import optuna
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.study import MaxTrialsCallback
from optuna.trial import TrialState

from s2ac.config import Config, TuneConfig, redact_secrets, with_changes
from s2ac.console import log
from s2ac.errors import S2ACError
from s2ac.registry.tracking import set_experiment
from s2ac.training.train import MONITOR, train

PARENT_RUN_ATTR = "mlflow_parent_run_id"
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
TUNED = ("lambda_l1", "learning_rate", "beta_1", "generator_filters")


@dataclass(frozen=True)
class TuneResult:
    study_name: str
    best_params: dict[str, Any]
    best_value: float
    counts: dict[str, int]  # trials per state name
    parent_run_id: str
    config: Config  # the input config with the best parameters in its train section
    trials: tuple[dict[str, Any], ...] = ()  # number, state, value, params of every trial


class PruneOnValidation(keras.callbacks.Callback):
    """Report the epoch's validation L1 to Optuna; stop training when the pruner says so.

    It stops ``fit`` instead of raising, so the trial's MLflow run still ends cleanly (tagged
    ``pruned``); the objective raises ``TrialPruned`` afterwards."""

    def __init__(self, trial: optuna.Trial) -> None:
        super().__init__()
        self.trial, self.pruned_at = trial, None

    def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
        self.trial.report(float((logs or {})[MONITOR]), step=epoch + 1)
        if self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.model.stop_training = True


def _storage(url: str) -> RDBStorage:
    """The study database. A worker killed mid-trial stops its heartbeat; after the grace
    period another worker marks that trial failed and re-queues its parameters once."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = {"connect_args": {"timeout": 60}}  # wait for the other workers' writes
    else:
        engine = {"pool_pre_ping": True}
    from sqlalchemy.exc import IntegrityError, OperationalError

    attempt = 0
    while True:
        try:
            with warnings.catch_warnings():  # heartbeats are experimental since Optuna 2.8
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                return RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=30, grace_period=120,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(max_retry=1),
                )  # fmt: skip
        except (IntegrityError, OperationalError):
            # Two workers creating a new database's tables at once: one wins, the other
            # finds them on the next attempt.
            attempt += 1
            if attempt == 5:
                raise
            time.sleep(float(attempt))


def _pruner(config: TuneConfig) -> optuna.pruners.BasePruner:
    if config.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=config.pruner_startup_trials)
    if config.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=config.epochs_per_trial)
    return optuna.pruners.NopPruner()


def open_study(config: Config, worker: int = 0) -> optuna.Study:
    """Create or load the study. Creating is atomic (unique name), so exactly one of several
    concurrent workers creates it; that one enqueues the train config's values and creates the
    MLflow parent run (:func:`ensure_parent_run`)."""
    tune = config.tune
    options = {
        "study_name": tune.study_name, "storage": _storage(tune.storage),
        "sampler": optuna.samplers.TPESampler(seed=tune.sampler_seed + worker),
        "pruner": _pruner(tune),
    }  # fmt: skip
    try:
        study = optuna.create_study(direction="minimize", **options)
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(**options)
    if tune.enqueue_train_config:
        study.enqueue_trial(
            {"lambda_l1": config.train.lambda_l1, "learning_rate": config.train.learning_rate}
        )
    _create_parent_run(study, config)
    return study


def suggest(trial: optuna.Trial, config: Config) -> Config:
    """The trial's config: λ and learning rate on log scales, β1 and width if enabled."""
    tune = config.tune
    update: dict[str, Any] = {
        "lambda_l1": trial.suggest_float("lambda_l1", *tune.lambda_l1_range, log=True),
        "learning_rate": trial.suggest_float("learning_rate", *tune.learning_rate_range, log=True),
        "epochs": tune.epochs_per_trial,
    }
    if tune.tune_beta_1:
        update["beta_1"] = trial.suggest_float("beta_1", 0.3, 0.9)
    if tune.tune_generator_filters:
        update["generator_filters"] = trial.suggest_categorical("generator_filters", [16, 32, 64])
    return with_changes(config, {f"train.{key}": value for key, value in update.items()})


def _create_parent_run(study: optuna.Study, config: Config) -> None:
    """Under ``mlflow run`` the project's run (``MLFLOW_RUN_ID``) becomes the parent."""
    set_experiment(config.registry)
    run_id = os.environ.pop("MLFLOW_RUN_ID", None)  # else every trial would resume it
    if run_id is None:
        experiment = mlflow.get_experiment_by_name(config.registry.experiment)
        run_id = mlflow.MlflowClient().create_run(
            experiment.experiment_id, run_name=f"tune-{study.study_name}",
            tags={"s2ac.study": study.study_name,
                  "s2ac.storage": redact_secrets(config.tune.storage)},
        ).info.run_id  # fmt: skip
    study.set_user_attr(PARENT_RUN_ATTR, run_id)


def ensure_parent_run(study: optuna.Study, config: Config, wait_s: float = 120.0) -> str:
    """The study's MLflow parent run id, waiting briefly for the creating worker to store it."""
    deadline = time.monotonic() + wait_s
    while (parent := study.user_attrs.get(PARENT_RUN_ATTR)) is None:
        if time.monotonic() > deadline:
            raise S2ACError(
                f"study {study.study_name}: no MLflow parent run recorded after {wait_s:g} s "
                "(the worker that created the study died early?)"
            )
        time.sleep(1.0)
    set_experiment(config.registry)
    return parent


def _objective(dataset_dir: str, config: Config, parent_run_id: str, ran: list[int]) -> Any:
    def objective(trial: optuna.Trial) -> float:
        ran.append(trial.number)
        trial_config = suggest(trial, config)
        pruning = PruneOnValidation(trial)
        result = train(
            dataset_dir, trial_config,
            checkpoint_dir=Path(config.tune.checkpoint_dir) / f"trial-{trial.number:04d}",
            callbacks=[pruning], log_model=False,
            run_options={
                "parent_run_id": parent_run_id, "run_name": f"trial-{trial.number:04d}",
                "tags": {"optuna.study": config.tune.study_name,
                         "optuna.trial": str(trial.number)},
            },
        )  # fmt: skip
        state = "pruned" if pruning.pruned_at else "complete"
        mlflow.MlflowClient().set_tag(result.run_id, "optuna.state", state)
        if pruning.pruned_at:
            log.info("trial %d pruned after epoch %d", trial.number, pruning.pruned_at)
            raise optuna.TrialPruned(f"pruned after epoch {pruning.pruned_at}")
        return min(result.history[MONITOR])

    return objective


class _StopAfterFailures:
    """Stop this worker after ``limit`` failed trials in a row (e.g. NaN losses), instead of
    failing forever: failed trials do not count against the budget."""

    def __init__(self, limit: int = 3) -> None:
        self.limit, self.failures = limit, 0

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failures = self.failures + 1 if trial.state == TrialState.FAIL else 0
        if self.failures >= self.limit:
            log.error("stopping: %d failed trials in a row", self.failures)
            study.stop()


def run_worker(
    dataset_dir: str | Path, config: Config, worker: int = 0, timeout_s: float | None = None
) -> list[int]:
    """Run trials of the shared study until its budget or ``timeout_s`` is spent; the numbers
    of the trials this worker ran."""
    study = open_study(config, worker)
    parent = ensure_parent_run(study, config)
    os.environ.pop("MLFLOW_RUN_ID", None)  # trials are children of ``parent``, not that run
    ran: list[int] = []
    study.optimize(
        _objective(str(dataset_dir), config, parent, ran),
        n_trials=None if _remaining(study, config.tune) else 0,
        timeout=timeout_s if timeout_s is not None else config.tune.timeout_s,
        callbacks=[MaxTrialsCallback(config.tune.n_trials, states=FINISHED), _StopAfterFailures()],
    )  # fmt: skip
    return ran


def _remaining(study: optuna.Study, tune: TuneConfig) -> int:
    return max(0, tune.n_trials - len(study.get_trials(deepcopy=False, states=FINISHED)))


def tune(
    dataset_dir: str | Path,
    config: Config,
    workers: int = 1,
    timeout_s: float | None = None,
) -> TuneResult:
    """Run the study with ``workers`` processes sharing it, then summarise it to MLflow."""
    study = open_study(config)
    ensure_parent_run(study, config)
    if workers <= 1:
        run_worker(dataset_dir, config, 0, timeout_s)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            futures = [
                pool.submit(run_worker, str(dataset_dir), config, index, timeout_s)
                for index in range(workers)
            ]
            for future in futures:
                future.result()
    return summarize(config)


def best_config(config: Config, params: dict[str, Any]) -> Config:
    """``config`` with the tuned values in its train section (epochs unchanged)."""
    return with_changes(config, {f"train.{key}": params[key] for key in TUNED if key in params})


def summarize(config: Config) -> TuneResult:
    """Best parameters, counts and plots of the study, logged to its parent run."""
    study = optuna.load_study(
        study_name=config.tune.study_name, storage=_storage(config.tune.storage)
    )
    counts: dict[str, int] = {}
    for trial in study.trials:
        counts[trial.state.name] = counts.get(trial.state.name, 0) + 1
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        raise S2ACError(f"study {study.study_name}: no completed trial yet ({counts})")
    parent = study.user_attrs[PARENT_RUN_ATTR]
    set_experiment(config.registry)
    client = mlflow.MlflowClient()
    # Tags and a JSON file, not params: a resumed study may find a better trial, and MLflow
    # params cannot change once logged.
    for key, value in study.best_params.items():
        client.set_tag(parent, f"best.{key}", f"{value:.6g}")
    client.log_dict(parent, {"best_params": study.best_params, "best_value": study.best_value,
                             "best_trial": study.best_trial.number, "trials": counts},
                    "optuna/best.json")  # fmt: skip
    metrics = {"best_val_gen_l1": study.best_value, "best_trial": study.best_trial.number}
    metrics |= {f"trials_{k.lower()}": v for k, v in counts.items()}
    for key, value in metrics.items():
        client.log_metric(parent, key, float(value))
    for name, figure in _plots(study).items():
        client.log_figure(parent, figure, f"optuna/{name}.png")
    return TuneResult(
        study_name=study.study_name, best_params=dict(study.best_params),
        best_value=float(study.best_value), counts=counts, parent_run_id=parent,
        config=best_config(config, study.best_params),
        trials=tuple(
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
            for t in study.trials
        ),
    )  # fmt: skip


def _plots(study: optuna.Study) -> dict[str, Any]:
    from optuna.visualization import matplotlib as plots

    figures = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        figures["optimization_history"] = plots.plot_optimization_history(study).figure
        figures["intermediate_values"] = plots.plot_intermediate_values(study).figure
        try:
            figures["param_importances"] = plots.plot_param_importances(study).figure
        except (ValueError, RuntimeError) as exc:  # needs two completed trials that differ
            log.warning("no parameter-importance plot: %s", exc)
    return figures
