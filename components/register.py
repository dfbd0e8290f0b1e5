"""Registry: register as challenger and decide the gate; promote to champion if it passed."""

from kfp import dsl


def register(
    profile: str,
    overrides: list,
    run_id: str,
    dataset: dsl.Input[dsl.Dataset],
    evaluation: dsl.Input[dsl.Artifact],
    decision: dsl.Output[dsl.Markdown],
) -> bool:
    """Register the run's model (alias challenger) and decide the quality gate: passed?"""
    from s2ac.orchestration import stages

    config = stages.config_for(profile, overrides)
    registration = stages.register(config, run_id, evaluation.path, dataset.path,
                               decision_path=decision.path)  # fmt: skip
    return registration.decision.passed


def promote(profile: str, overrides: list, run_id: str) -> bool:
    """Move champion to the version of training run ``run_id`` (refused if the champion changed
    since the gate decided)."""
    from s2ac.orchestration import stages

    return stages.promote(stages.config_for(profile, overrides), run_id)
