"""The tuning pipeline: data → validate → Optuna workers in parallel on one study → train the
best → evaluate → gate → promote if passed."""

from typing import Any

from kfp import dsl, kubernetes

from pipelines.resources import on_gpu, small, uncached, with_retries
from pipelines.training import train_and_gate
from s2ac.config import PipelineConfig

# The Optuna database password (infra/README.md, "Optuna storage"): never in the spec, only a
# reference to a Kubernetes secret, exposed to the tasks that open the study.
OPTUNA_SECRET = "s2ac-optuna"


def _with_db_password(task: Any) -> Any:
    kubernetes.use_secret_as_env(
        task, secret_name=OPTUNA_SECRET, secret_key_to_env={"PGPASSWORD": "PGPASSWORD"}
    )
    return task


def tuning_pipeline(c: Any, config: PipelineConfig) -> Any:
    downstream = train_and_gate(c, config)

    @dsl.pipeline(
        name="s2ac-tuning",
        description="Optuna sweep of lambda and learning rate with parallel workers sharing one "
        "study, then the best configuration trained, evaluated and gated.",
    )
    def tuning(
        profile: str = "small",
        overrides: list = [],  # noqa: B006 - KFP pipeline parameters are declared this way
        tracking_uri: str = "",
        storage: str = "postgresql+psycopg://optuna@postgres.s2ac.svc.cluster.local:5432/optuna",
        n_trials: int = 20,
        workers: list = list(range(config.n_tune_workers)),  # noqa: B006
        lambda_l1_range: list = [1.0, 1000.0],  # noqa: B006
        learning_rate_range: list = [1e-5, 1e-3],  # noqa: B006
        epochs: int = 100,
    ) -> None:
        common = {"profile": profile, "overrides": overrides, "tracking_uri": tracking_uri}
        study = {"storage": storage, "n_trials": n_trials, "lambda_l1_range": lambda_l1_range,
                 "learning_rate_range": learning_rate_range}  # fmt: skip
        data_args = {"profile": profile, "overrides": overrides}
        synthesized = small(c.synth(**data_args))
        dataset, digest = synthesized.outputs["dataset"], synthesized.outputs["Output"]
        checked = small(with_retries(c.validate(**data_args, dataset=dataset,
                                                dataset_digest=digest), config))  # fmt: skip
        opened = _with_db_password(uncached(c.open_study(**common, **study))).after(checked)
        with dsl.ParallelFor(items=workers, parallelism=config.n_tune_workers) as worker:
            trials = on_gpu(_with_db_password(uncached(c.tune_worker(
                **common, **study, worker=worker, parent_run_id=opened.output, dataset=dataset,
            ))), config)  # fmt: skip
        best = _with_db_password(uncached(c.best_params(**common, storage=storage)))
        best.after(trials)  # fan-in: waits for every worker
        downstream(  # validate again is a cache hit: same component, same inputs
            **common,
            dataset=dataset,
            dataset_digest=digest,
            epochs=epochs,
            lambda_l1=best.outputs["lambda_l1"],
            learning_rate=best.outputs["learning_rate"],
        )

    return tuning
