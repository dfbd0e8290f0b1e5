"""Exit handler: record how the pipeline ended (in MLflow, next to the models)."""

from kfp import dsl


def record_status(
    profile: str, overrides: list, pipeline: str, status: dsl.PipelineTaskFinalStatus
) -> None:
    """Runs whatever happened inside the exit handler, failures included."""
    from s2ac.orchestration import stages

    config = stages.config_for(profile, overrides)
    stages.record_status(config, pipeline, status.state, status.error_message or "")
