"""Kubeflow Pipelines v2 components, one per stage.

Each module holds the plain function of one stage: typed parameters and artifacts in, one call
to :mod:`s2ac.orchestration.stages` (the library), outputs back. :func:`build` turns them into
lightweight components on the project image, whose tag is part of every task's cache key (a code
change is a new image); the dataset digest is an input of every task after the data, so a data
change misses the cache as well.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kfp import dsl

from components import correct, evaluate, export, register, status, synth, train, tune, validate


@dataclass(frozen=True)
class Components:
    export: Any
    synth: Any
    validate: Any
    train: Any
    evaluate: Any
    open_study: Any
    tune_worker: Any
    best_overrides: Any
    register: Any
    promote: Any
    record_status: Any
    pin_model: Any
    find_scenes: Any
    correct_scene: Any


def build(image: str) -> Components:
    """Every stage as a component on ``image`` (the project image has kfp and s2ac installed)."""

    def make(func: Any) -> Any:
        return dsl.component(func=func, base_image=image, install_kfp_package=False)

    return Components(
        export=make(export.export),
        synth=make(synth.synth),
        validate=make(validate.validate),
        train=make(train.train),
        evaluate=make(evaluate.evaluate),
        open_study=make(tune.open_study),
        tune_worker=make(tune.tune_worker),
        best_overrides=make(tune.best_overrides),
        register=make(register.register),
        promote=make(register.promote),
        record_status=make(status.record_status),
        pin_model=make(correct.pin_model),
        find_scenes=make(correct.find_scenes),
        correct_scene=make(correct.correct_scene),
    )
