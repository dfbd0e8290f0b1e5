"""Evaluation on test and ood beside identity, dos, 6s, linear and oracle; metrics and report."""

from kfp import dsl


def evaluate(
    profile: str,
    overrides: list,
    run_id: str,
    dataset: dsl.Input[dsl.Dataset],
    model: dsl.Input[dsl.Model],
    validation: dsl.Input[dsl.Artifact],
    evaluation: dsl.Output[dsl.Artifact],
    metrics: dsl.Output[dsl.Metrics],
    report: dsl.Output[dsl.Markdown],
) -> None:
    """Score the model and the baselines; log them and the validation docs into run ``run_id``."""
    import shutil

    from s2ac.evaluation.evaluate import headline_metrics
    from s2ac.orchestration import stages

    result = stages.evaluate(
        stages.config_for(profile, overrides), dataset.path, f"{model.path}/best",
        evaluation.path, run_id=run_id, validation_docs=validation.path,
    )  # fmt: skip
    for name, value in headline_metrics(result).items():
        metrics.log_metric(name, value)
    shutil.copyfile(result.report, report.path)
