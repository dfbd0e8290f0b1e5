"""Pix2Pix training (GPU when the node has one); the MLflow run id is the task's output."""

from kfp import dsl


def train(
    profile: str,
    overrides: list,
    dataset_digest: str,
    dataset: dsl.Input[dsl.Dataset],
    model: dsl.Output[dsl.Model],
) -> str:
    """Train on ``dataset``; checkpoints (``best/`` is the model) go into ``model``; a retried
    task resumes from the last epoch's checkpoint."""
    from s2ac.orchestration import stages

    model.metadata["dataset_digest"] = dataset_digest
    config = stages.config_for(profile, overrides)
    return str(stages.train(config, dataset.path, model.path, resume=True).run_id)
