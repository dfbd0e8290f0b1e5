"""Kubeflow pipelines, declarative: which components run, in which order, with which resources.

``training``: synth or Earth Engine export → validate → train (GPU) → evaluate → gate →
``dsl.If(passed)`` promote, inside an exit handler that records how the run ended.
``tuning``: data → validate → open the Optuna study → ``ParallelFor`` workers sharing it → train the
best → evaluate → gate → promote.
``correction``: pin the model (default: the champion) to one version → list the scenes under a
``gs://`` prefix (or a list) → ``ParallelFor`` correct each into a COG plus a JSON item (GPU).
Each is built for an image by :func:`build`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from components import build as build_components
from pipelines.correction import correction_pipeline
from pipelines.training import training_pipeline
from pipelines.tuning import tuning_pipeline
from s2ac.config import PipelineConfig

PIPELINES: dict[str, Callable[[Any, PipelineConfig], Any]] = {
    "training": training_pipeline,
    "tuning": tuning_pipeline,
    "correction": correction_pipeline,
}


def build(name: str, config: PipelineConfig) -> Any:
    """The pipeline ``name`` on ``config.image`` with ``config``'s resources."""
    if name not in PIPELINES:
        raise ValueError(f"unknown pipeline {name!r}: choose from {sorted(PIPELINES)}")
    return PIPELINES[name](build_components(config.image), config)
