"""Optuna: create the shared study, run a worker on it, read its best parameters."""

from typing import NamedTuple

from kfp import dsl


def open_study(
    profile: str,
    overrides: list,
    tracking_uri: str,
    storage: str,
    n_trials: int,
    lambda_l1_range: list,
    learning_rate_range: list,
) -> str:
    """Create the study and its MLflow parent run before the workers fan out."""
    from s2ac.orchestration import stages as steps

    settings = steps.study_settings(storage, n_trials, lambda_l1_range, learning_rate_range)
    return steps.open_study(steps.config_for(profile, overrides, tracking_uri, settings))


def tune_worker(
    profile: str,
    overrides: list,
    tracking_uri: str,
    storage: str,
    n_trials: int,
    lambda_l1_range: list,
    learning_rate_range: list,
    worker: int,
    parent_run_id: str,
    dataset: dsl.Input[dsl.Dataset],
) -> str:
    """Run trials of the shared study until its budget is spent; the trials this worker ran."""
    from s2ac.orchestration import stages as steps

    settings = steps.study_settings(storage, n_trials, lambda_l1_range, learning_rate_range)
    config = steps.config_for(profile, overrides, tracking_uri, settings)
    return ",".join(str(n) for n in steps.tune_worker(dataset.path, worker, config))


def best_params(profile: str, overrides: list, tracking_uri: str, storage: str) -> NamedTuple(
    "Best", lambda_l1=float, learning_rate=float
):
    """The study's best λ and learning rate (logged to the parent run with the plots)."""
    from collections import namedtuple

    from s2ac.orchestration import stages as steps

    config = steps.config_for(profile, overrides, tracking_uri, {"tune.storage": storage})
    best = steps.best_params(config)
    return namedtuple("Best", ["lambda_l1", "learning_rate"])(
        best["lambda_l1"], best["learning_rate"]
    )
