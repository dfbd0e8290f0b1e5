"""MLflow conventions in one place: tracking URI, experiment, runs and dataset lineage.

Tracking URI: ``registry.tracking_uri`` from config, else ``MLFLOW_TRACKING_URI``, else a SQLite
database ``mlflow.db`` in the working directory (the model registry needs a database).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset

from s2ac.config import RegistryConfig

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"


def tracking_uri(config: RegistryConfig) -> str:
    return config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


@contextmanager
def start_run(config: RegistryConfig, run_id: str | None = None, **kwargs: Any) -> Iterator[Any]:
    """Start (or continue, with ``run_id``) a run in the configured experiment."""
    mlflow.set_tracking_uri(tracking_uri(config))
    mlflow.set_experiment(config.experiment)
    with mlflow.start_run(run_id=run_id, **kwargs) as run:
        yield run


def log_dataset(root: str, manifest: dict[str, Any], context: str) -> None:
    """Record the dataset as a run input, identified by the manifest's digest."""
    source_uri = root if "://" in root else os.path.abspath(root)
    dataset = MetaDataset(
        source=resolve_dataset_source(source_uri),
        name=manifest.get("name", "s2ac-dataset"),
        digest=manifest["digest"][:16],
    )
    mlflow.log_input(dataset, context=context)
