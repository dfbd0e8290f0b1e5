"""Task settings shared by the pipelines: GPU and resources for training and scene correction,
retries for I/O, the MLflow login of the tasks that talk to the tracking server."""

from __future__ import annotations

from typing import Any

from kfp import kubernetes

from s2ac.config import PipelineConfig

# The MLflow server requires a login (basic-auth; infra/README.md, "Security"). The pipeline's
# user and password: never in the spec, only a reference to a Kubernetes secret in the namespace
# the pipeline pods run in, exposed to the tasks that log runs or use the registry.
MLFLOW_SECRET = "s2ac-mlflow"
MLFLOW_LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def on_gpu(task: Any, config: PipelineConfig) -> Any:
    """Training and scene correction: the accelerator, CPU and memory from ``pipeline.*``
    (ignored by kfp.local)."""
    task.set_cpu_request(config.train_cpu).set_cpu_limit(config.train_cpu)
    task.set_memory_request(config.train_memory).set_memory_limit(config.train_memory)
    if config.gpu_count:
        task.set_accelerator_type(config.gpu_accelerator).set_accelerator_limit(config.gpu_count)
    return task


def with_retries(task: Any, config: PipelineConfig) -> Any:
    """Stages that talk to Earth Engine, Cloud Storage or MLflow retry transient failures."""
    return task.set_retry(num_retries=config.io_retries, backoff_duration="30s", backoff_factor=2.0)


def small(task: Any) -> Any:
    return task.set_cpu_request("1").set_memory_request("4G").set_memory_limit("8G")


def uncached(task: Any) -> Any:
    """Tasks with side effects (registry, shared study, status, COGs outside the pipeline root)
    or inputs that change behind equal parameters (the champion, a prefix's scenes) must run
    every time."""
    return task.set_caching_options(enable_caching=False)


def mlflow_client(task: Any) -> Any:
    """A task that talks to MLflow: MLFLOW_TRACKING_USERNAME/PASSWORD from ``MLFLOW_SECRET``."""
    kubernetes.use_secret_as_env(
        task, secret_name=MLFLOW_SECRET, secret_key_to_env={key: key for key in MLFLOW_LOGIN}
    )
    return task
