"""Great Expectations suite over per-patch statistics: a failing dataset stops the pipeline."""

from kfp import dsl


def validate(
    profile: str,
    overrides: list,
    dataset_digest: str,
    dataset: dsl.Input[dsl.Dataset],
    docs: dsl.Output[dsl.Artifact],
    report: dsl.Output[dsl.HTML],
) -> None:
    """Validate ``dataset``; the GX data docs site as ``docs`` (logged to the training run by the
    evaluate task) and its front page as ``report``, shown in the KFP UI."""
    import shutil

    from s2ac.orchestration import stages

    stages.validate(stages.config_for(profile, overrides), dataset.path, docs.path)
    shutil.copyfile(f"{docs.path}/index.html", report.path)
