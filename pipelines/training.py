"""The training pipeline: data → validate → train → evaluate → gate → promote if passed.

Its parameters are ``source`` (embedded data or Earth Engine), ``profile`` and ``overrides``:
every task resolves its config from the profile plus the overrides, so a run trains and gates
what the profile says, and ``-o train.epochs=3`` reaches the task that uses it. The data come from
Earth Engine or from the embedded scene; each branch feeds the same sub-pipeline
``validate-train-gate``, so no ``dsl.OneOf`` is needed (kfp.local cannot resolve artifacts
through ``OneOf``) and the stages are declared once.
"""

from typing import Any

from kfp import dsl

from pipelines.resources import mlflow_client, on_gpu, small, uncached, with_retries
from s2ac.config import PipelineConfig


def train_and_gate(c: Any, config: PipelineConfig) -> Any:
    """validate → train (GPU) → evaluate → gate → ``dsl.If(passed)`` promote."""

    @dsl.pipeline(name="validate-train-gate")
    def validate_train_gate(
        profile: str, overrides: list, dataset: dsl.Input[dsl.Dataset], dataset_digest: str
    ) -> None:
        common = {"profile": profile, "overrides": overrides}
        validate = c.validate(**common, dataset=dataset, dataset_digest=dataset_digest)
        validated = small(with_retries(validate, config))
        # train, evaluate, register and promote log to MLflow or use its registry: its login.
        train = c.train(**common, dataset=dataset, dataset_digest=dataset_digest)
        trained = mlflow_client(on_gpu(train, config)).after(validated)
        run_id = trained.outputs["Output"]
        evaluated = mlflow_client(small(c.evaluate(
            **common, run_id=run_id, dataset=dataset, model=trained.outputs["model"],
            validation=validated.outputs["docs"],
        )))  # fmt: skip
        gated = mlflow_client(small(uncached(with_retries(c.register(
            **common, run_id=run_id, dataset=dataset, evaluation=evaluated.outputs["evaluation"],
        ), config))))  # fmt: skip
        with dsl.If(gated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
            mlflow_client(uncached(with_retries(c.promote(**common, run_id=run_id), config)))

    return validate_train_gate


def training_pipeline(c: Any, config: PipelineConfig) -> Any:
    downstream = train_and_gate(c, config)

    @dsl.pipeline(
        name="s2ac-training",
        description="Sentinel-2 atmospheric correction: data, validation, Pix2Pix training, "
        "evaluation against physics baselines, quality-gated promotion in the MLflow registry.",
    )
    def training(
        source: str = "synth",
        profile: str = "default",
        overrides: list = [],  # noqa: B006 - KFP pipeline parameters are declared this way
    ) -> None:
        common = {"profile": profile, "overrides": overrides}
        status = mlflow_client(uncached(c.record_status(**common, pipeline="s2ac-training")))
        with dsl.ExitHandler(status, name="record-status"):
            with dsl.If(source == "earthengine", name="from-earth-engine"):
                exported = small(with_retries(c.export(**common), config))
                downstream(**common, dataset=exported.outputs["dataset"],
                           dataset_digest=exported.outputs["Output"])  # fmt: skip
            with dsl.Else(name="embedded-data"):
                synthesized = small(c.synth(**common))
                downstream(**common, dataset=synthesized.outputs["dataset"],
                           dataset_digest=synthesized.outputs["Output"])  # fmt: skip

    return training
