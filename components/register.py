"""Registry: register as challenger and decide the gate; promote to champion if it passed."""

from kfp import dsl


def gate(
    profile: str,
    overrides: list,
    tracking_uri: str,
    run_id: str,
    dataset: dsl.Input[dsl.Dataset],
    evaluation: dsl.Input[dsl.Artifact],
    decision: dsl.Output[dsl.Markdown],
) -> bool:
    """Register the run's model (alias challenger) and decide the quality gate: passed?"""
    from s2ac.orchestration import stages as steps

    config = steps.config_for(profile, overrides, tracking_uri)
    result = steps.gate(run_id, evaluation.path, dataset.path, config)
    with open(decision.path, "w") as file:
        file.write(result["markdown"])
    return result["passed"]


def promote(profile: str, overrides: list, tracking_uri: str, run_id: str) -> bool:
    """Move champion to the version of training run ``run_id`` (refused if the champion changed
    since the gate decided)."""
    from s2ac.orchestration import stages as steps

    return steps.promote(run_id, steps.config_for(profile, overrides, tracking_uri))
