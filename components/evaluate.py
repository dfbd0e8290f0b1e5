"""Evaluation on test and ood beside identity, dos, 6s, linear and oracle; metrics and report."""

from kfp import dsl


def evaluate(
    profile: str,
    overrides: list,
    tracking_uri: str,
    run_id: str,
    dataset: dsl.Input[dsl.Dataset],
    model: dsl.Input[dsl.Model],
    evaluation: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
) -> None:
    """Score the model and the baselines on test and ood; log into training run ``run_id``."""
    import os

    from s2ac.orchestration import stages as steps

    config = steps.config_for(profile, overrides, tracking_uri)
    means = steps.evaluate(dataset.path, model.path, evaluation.path, run_id, config)
    for name, value in means.items():
        metrics.log_metric(name, value)
    with open(os.path.join(evaluation.path, "report.md")) as source, open(report.path, "w") as out:
        out.write(source.read())
