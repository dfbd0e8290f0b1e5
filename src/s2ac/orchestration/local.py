"""The whole local pipeline in one call: synth → validate → [tune] → train → evaluate → register.

``make demo``, ``s2ac run`` and the MLproject's ``main`` entry point all run this; the KFP
pipelines chain the same library functions as separate containerized steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from s2ac.config import Config
from s2ac.console import log

if TYPE_CHECKING:
    from s2ac.evaluation.evaluate import Evaluation
    from s2ac.registry.versions import Registration


@dataclass(frozen=True)
class WorkflowResult:
    dataset: Path
    run_id: str
    evaluation: Evaluation
    registration: Registration
    tuned_params: dict[str, Any] | None = None


def run_local(
    config: Config, out: str | Path, tune_first: bool = False, workers: int = 1
) -> WorkflowResult:
    """Run every stage into ``out`` and return what each produced."""
    import mlflow

    from s2ac.data.synthetic import synthesize
    from s2ac.evaluation.evaluate import evaluate, log_evaluation
    from s2ac.orchestration import stages as steps
    from s2ac.registry.tracking import start_run
    from s2ac.registry.versions import register
    from s2ac.training.train import train

    out = Path(out)
    dataset = out / "data"
    log.info("[1/5] synthesizing the embedded dataset into %s", dataset)
    synthesize(dataset, config.data)
    log.info("[2/5] validating it with Great Expectations")
    steps.validate(str(dataset), str(out / "validation"), config)  # raises when it fails
    tuned = None
    if tune_first:
        from s2ac.training.tune import tune

        log.info("[2b/5] Optuna sweep (%d trials, %d workers)", config.tune.n_trials, workers)
        result = tune(dataset, config, workers=workers)
        config, tuned = result.config, result.best_params
    log.info("[3/5] training")
    trained = train(dataset, config, checkpoint_dir=out / "checkpoints")
    log.info("[4/5] evaluating on test and ood against identity, dos, 6s, linear and oracle")
    evaluation = evaluate(dataset, trained.checkpoint_dir / "best", config.evaluate,
                          out / "evaluation")  # fmt: skip
    with start_run(config.registry, run_id=trained.run_id):
        log_evaluation(evaluation)
        mlflow.log_artifacts(str(out / "validation"), artifact_path="validation")
    log.info("[5/5] registering and gating %s", config.registry.model_name)
    registration = register(trained.run_id, out / "evaluation", dataset, config)
    (out / "gate.md").write_text(registration.decision.markdown())
    return WorkflowResult(dataset, trained.run_id, evaluation, registration, tuned)
