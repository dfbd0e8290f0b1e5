"""Pix2Pix training (GPU when the node has one); the MLflow run id is the task's output."""

from kfp import dsl


def train(
    profile: str,
    overrides: list,
    tracking_uri: str,
    dataset_digest: str,
    lambda_l1: float,
    learning_rate: float,
    epochs: int,
    dataset: dsl.Input[dsl.Dataset],
    model: dsl.Output[dsl.Model],
) -> str:
    """Train on ``dataset``; checkpoints (``best/`` is the model) go into ``model``."""
    from s2ac.orchestration import stages as steps

    settings = {"train.lambda_l1": lambda_l1, "train.learning_rate": learning_rate,
                "train.epochs": epochs}  # fmt: skip
    config = steps.config_for(profile, overrides, tracking_uri, settings)
    model.metadata["dataset_digest"] = dataset_digest
    return steps.train(dataset.path, model.path, config)
