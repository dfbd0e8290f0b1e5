"""Exit handler: record how the pipeline ended (in MLflow, next to the models)."""

from kfp import dsl


def record_status(
    profile: str,
    overrides: list,
    tracking_uri: str,
    pipeline: str,
    status: dsl.PipelineTaskFinalStatus,
) -> None:
    """Runs whatever happened inside the exit handler, failures included."""
    from s2ac.orchestration import stages as steps

    error = status.error_message or ""
    config = steps.config_for(profile, overrides, tracking_uri)
    steps.record_status(status.state, error, pipeline, config)
