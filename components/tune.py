"""Optuna: create the shared study, run a worker on it, hand its best values to training.

The study (name, storage, budget, ranges) is the ``tune.*`` section: overrides set it."""

from kfp import dsl


def open_study(profile: str, overrides: list) -> str:
    """Create the study and its MLflow parent run before the workers fan out."""
    from s2ac.orchestration import stages

    return stages.open_study(stages.config_for(profile, overrides))


def tune_worker(
    profile: str, overrides: list, worker: int, parent_run_id: str,
    dataset: dsl.Input[dsl.Dataset],
) -> str:  # fmt: skip
    """Run trials of the shared study until its budget is spent; the trials this worker ran."""
    from s2ac.orchestration import stages

    config = stages.config_for(profile, overrides)
    return ",".join(str(n) for n in stages.tune_worker(config, dataset.path, worker))


def best_overrides(profile: str, overrides: list) -> list:
    """``overrides`` followed by the study's best λ and learning rate: the training's overrides."""
    from s2ac.orchestration import stages

    return stages.tuned_overrides(stages.config_for(profile, overrides), overrides)
