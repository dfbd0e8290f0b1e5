"""MLflow conventions in one place: tracking URI, experiment, runs and dataset lineage.

Tracking URI: ``registry.tracking_uri`` from config, else ``MLFLOW_TRACKING_URI``, else a SQLite
database ``mlflow.db`` in the working directory (the model registry needs a database). With a
SQLite URI the experiment's artifacts go to ``mlartifacts/`` beside the database, the layout
``mlflow server`` uses, so ``mlflow ui`` in that folder shows runs, figures and models.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import mlflow
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException

from s2ac.config import RegistryConfig, redact_secrets
from s2ac.errors import S2ACError

DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
ARTIFACTS_DIR = "mlartifacts"


def tracking_uri(config: RegistryConfig) -> str:
    return config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_TRACKING_URI


def sqlite_artifact_root(uri: str) -> str | None:
    """``file://`` URI of ``mlartifacts/`` beside a ``sqlite:///`` database; None otherwise."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///"))
    return (database.resolve().parent / ARTIFACTS_DIR).as_uri()


class TrackingUnreachableError(S2ACError):
    """The MLflow tracking server does not answer."""


def check_server(config: RegistryConfig) -> None:
    """For an http(s) tracking URI: ``GET /health`` within the configured attempts, else a
    one-line :class:`TrackingUnreachableError` in seconds. Other URIs (sqlite, files) pass."""
    import time

    import requests

    uri = tracking_uri(config)
    if not uri.startswith(("http://", "https://")):
        return
    problem = ""
    for attempt in range(config.connect_attempts):
        if attempt:
            time.sleep(2.0)
        try:
            answer = requests.get(f"{uri.rstrip('/')}/health", timeout=config.connect_timeout_s)
        except requests.RequestException as exc:
            problem = type(exc).__name__
            continue
        if answer.status_code < 500:  # 401/403: up, behind authentication
            return
        problem = f"HTTP {answer.status_code}"
    raise TrackingUnreachableError(
        f"MLflow tracking server {redact_secrets(uri)} unreachable ({problem}, "
        f"{config.connect_attempts} attempts of {config.connect_timeout_s:g} s): start it, or set "
        "registry.tracking_uri / MLFLOW_TRACKING_URI (registry.connect_attempts sets the budget)"
    )


def connect(config: RegistryConfig) -> str:
    """Point MLflow at the configured server (checked first) for reads; the URI."""
    check_server(config)
    uri = tracking_uri(config)
    mlflow.set_tracking_uri(uri)
    return uri


def set_experiment(config: RegistryConfig) -> str:
    """Point MLflow at the configured server and experiment (created if needed); its id."""
    uri = connect(config)
    experiment = mlflow.get_experiment_by_name(config.experiment)
    if experiment is not None:
        experiment_id = experiment.experiment_id
    else:
        try:
            experiment_id = mlflow.create_experiment(
                config.experiment, artifact_location=sqlite_artifact_root(uri)
            )
        except MlflowException:  # created meanwhile by a concurrent process
            experiment_id = mlflow.get_experiment_by_name(config.experiment).experiment_id
    mlflow.set_experiment(experiment_id=experiment_id)
    return experiment_id


@contextmanager
def start_run(config: RegistryConfig, run_id: str | None = None, **kwargs: Any) -> Iterator[Any]:
    """Start (or continue, with ``run_id``) a run in the configured experiment.

    A continued run stays in its own experiment. Under ``mlflow run`` (``MLFLOW_RUN_ID`` set) the
    project's run is continued, so every stage logs into the one run ``mlflow run`` shows."""
    existing = run_id or os.environ.get("MLFLOW_RUN_ID")
    if existing:
        check_server(config)
        mlflow.set_tracking_uri(tracking_uri(config))
        experiment_id = mlflow.get_run(existing).info.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
    else:
        set_experiment(config)
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


def git_commit() -> str:
    """The code version for lineage: ``S2AC_GIT_COMMIT`` (set in images), else ``git``, else
    ``unknown``."""
    if commit := os.environ.get("S2AC_GIT_COMMIT"):
        return commit
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10,
            cwd=Path(__file__).resolve().parent, check=True,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return result.stdout.strip() or "unknown"
