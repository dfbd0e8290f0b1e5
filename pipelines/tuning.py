"""The tuning pipeline: data → validate → Optuna workers in parallel on one study → train the
best → evaluate → gate → promote if passed.

Parameters are ``profile`` and ``overrides`` only: the study is the ``tune.*`` section (on a
cluster, ``tune.storage`` names the shared database, e.g.
``postgresql+psycopg://optuna@postgres.s2ac.svc.cluster.local:5432/optuna``; its password comes
from a Kubernetes secret, and Postgres admits only the pods that open the study, labelled
``s2ac.io/database-client=true``). The best λ and learning rate reach training as overrides
appended to the run's, the one way configuration travels.
"""

from typing import Any

from kfp import dsl, kubernetes

from pipelines.resources import mlflow_client, on_gpu, small, uncached, with_retries
from pipelines.training import train_and_gate
from s2ac.config import PipelineConfig

# The Optuna database password (infra/README.md, "Optuna storage"): never in the spec, only a
# reference to a Kubernetes secret, exposed to the tasks that open the study.
OPTUNA_SECRET = "s2ac-optuna"
# The pod label of those tasks: the only pipeline pods that Postgres' NetworkPolicy admits
# (infra/k8s/base/networkpolicy-postgres.yaml).
DATABASE_CLIENT_LABEL = ("s2ac.io/database-client", "true")


def _database_client(task: Any) -> Any:
    """A task that opens the Optuna study: the password, and the label the policy admits."""
    kubernetes.use_secret_as_env(
        task, secret_name=OPTUNA_SECRET, secret_key_to_env={"PGPASSWORD": "PGPASSWORD"}
    )
    kubernetes.add_pod_label(task, *DATABASE_CLIENT_LABEL)
    return task


def tuning_pipeline(c: Any, config: PipelineConfig) -> Any:
    downstream = train_and_gate(c, config)

    @dsl.pipeline(
        name="s2ac-tuning",
        description="Optuna sweep of lambda and learning rate with parallel workers sharing one "
        "study, then the best configuration trained, evaluated and gated.",
    )
    def tuning(
        profile: str = "default",
        overrides: list = [],  # noqa: B006 - KFP pipeline parameters are declared this way
    ) -> None:
        common = {"profile": profile, "overrides": overrides}
        synthesized = small(c.synth(**common))
        dataset, digest = synthesized.outputs["dataset"], synthesized.outputs["Output"]
        checked = small(with_retries(c.validate(**common, dataset=dataset,
                                                dataset_digest=digest), config))  # fmt: skip
        # open-study, the workers and best-overrides use both the study and MLflow.
        opened = mlflow_client(_database_client(uncached(c.open_study(**common)))).after(checked)
        workers = list(range(config.n_tune_workers))
        with dsl.ParallelFor(items=workers, parallelism=config.n_tune_workers) as worker:
            trials = on_gpu(mlflow_client(_database_client(uncached(c.tune_worker(
                **common, worker=worker, parent_run_id=opened.output, dataset=dataset,
            )))), config)  # fmt: skip
        best = mlflow_client(_database_client(uncached(c.best_overrides(**common))))
        best.after(trials)  # fan-in: waits for every worker
        # validate again is a cache hit: same component, same inputs
        downstream(profile=profile, overrides=best.output, dataset=dataset, dataset_digest=digest)

    return tuning
