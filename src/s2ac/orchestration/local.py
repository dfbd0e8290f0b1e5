"""The training run in this process: the stages of :data:`~s2ac.orchestration.stages.TRAINING_ORDER`
(data → validate → [tune] → train → evaluate → register (+ gate) → promote), each one call to
:mod:`s2ac.orchestration.stages`, all outputs under one folder.

``make demo``, ``s2ac run`` and the MLproject's ``main`` entry point run this; the KFP training
pipeline chains the same stage functions as containerized tasks in the same order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2ac.config import Config
from s2ac.console import log
from s2ac.orchestration import stages

if TYPE_CHECKING:
    from s2ac.evaluation.evaluate import Evaluation
    from s2ac.registry.versions import Registration


@dataclass(frozen=True)
class RunResult:
    dataset: Path
    run_id: str
    evaluation: Evaluation
    registration: Registration
    tuned_params: dict[str, Any] | None = None


def run(config: Config, out: str | Path, tune_first: bool = False, workers: int = 1) -> RunResult:
    """Run every stage into ``out`` (data/, validation/, checkpoints/, evaluation/, gate.md)."""
    out = Path(out)
    n = len(stages.TRAINING_ORDER)
    log.info("[1/%d] data: the embedded dataset into %s", n, out / "data")
    dataset = stages.synth(config, out / "data")
    log.info("[2/%d] validate: Great Expectations suite, data docs in %s", n, out / "validation")
    stages.validate(config, dataset.path, out / "validation")
    tuned = None
    if tune_first:
        log.info("[2b/%d] Optuna sweep (%d trials, %d workers)", n, config.tune.n_trials, workers)
        result = stages.tune(config, dataset.path, workers=workers)
        config, tuned = result.config, result.best_params
    log.info("[3/%d] train", n)
    trained = stages.train(config, dataset.path, out / "checkpoints")
    run_id = str(trained.run_id)
    log.info("[4/%d] evaluate on test and ood beside identity, dos, 6s, linear and oracle", n)
    evaluation = stages.evaluate(
        config, dataset.path, trained.checkpoint_dir / "best", out / "evaluation",
        run_id=run_id, validation_docs=out / "validation",
    )  # fmt: skip
    log.info("[5/%d] register %s and decide the gate", n, config.registry.model_name)
    registration = stages.register(config, run_id, out / "evaluation", dataset.path,
                               decision_path=out / "gate.md")  # fmt: skip
    if registration.decision.passed:
        log.info("[6/%d] promote", n)
        registration = stages.promoted(registration, stages.promote(config, run_id))
    return RunResult(Path(dataset.path), run_id, evaluation, registration, tuned)
