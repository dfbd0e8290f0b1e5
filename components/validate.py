"""Great Expectations suite over per-patch statistics: a failing dataset stops the pipeline."""

from kfp import dsl


def validate(
    profile: str,
    overrides: list,
    dataset_digest: str,
    dataset: dsl.Input[dsl.Dataset],
    report: dsl.Output[dsl.HTML],
) -> None:
    """Validate ``dataset`` (digest ``dataset_digest``); the summary as an HTML artifact."""
    import html
    import tempfile

    from s2ac.orchestration import stages as steps

    summary = steps.validate(dataset.path, tempfile.mkdtemp(), steps.config_for(profile, overrides))
    with open(report.path, "w") as file:
        file.write(f"<h1>Dataset {dataset_digest[:16]}</h1><pre>{html.escape(summary)}</pre>")
