"""The training pipeline: data → validate → train → evaluate → gate → promote if passed.

The data come from Earth Engine or from the embedded scene (``source``); each branch feeds the
same sub-pipeline ``validate-train-gate``, so no ``dsl.OneOf`` is needed (kfp.local cannot
resolve artifacts through ``OneOf``) and the stages are declared once.
"""

from typing import Any

from kfp import dsl

from pipelines.resources import on_gpu, small, uncached, with_retries
from s2ac.config import PipelineConfig


def train_and_gate(c: Any, config: PipelineConfig) -> Any:
    """validate → train (GPU) → evaluate → gate → ``dsl.If(passed)`` promote."""

    @dsl.pipeline(name="validate-train-gate")
    def validate_train_gate(
        profile: str,
        overrides: list,
        tracking_uri: str,
        dataset: dsl.Input[dsl.Dataset],
        dataset_digest: str,
        lambda_l1: float,
        learning_rate: float,
        epochs: int,
    ) -> None:
        common = {"profile": profile, "overrides": overrides}
        validate = c.validate(**common, dataset=dataset, dataset_digest=dataset_digest)
        checked = small(with_retries(validate, config))
        common["tracking_uri"] = tracking_uri
        trained = on_gpu(c.train(
            **common, dataset=dataset, dataset_digest=dataset_digest, lambda_l1=lambda_l1,
            learning_rate=learning_rate, epochs=epochs,
        ), config).after(checked)  # fmt: skip
        run_id = trained.outputs["Output"]
        evaluated = small(c.evaluate(**common, run_id=run_id, dataset=dataset,
                                     model=trained.outputs["model"]))  # fmt: skip
        gated = small(uncached(with_retries(c.gate(
            **common, run_id=run_id, dataset=dataset, evaluation=evaluated.outputs["evaluation"],
        ), config)))  # fmt: skip
        with dsl.If(gated.outputs["Output"] == True, name="gate-passed"):  # noqa: E712
            promote = c.promote(**common, run_id=run_id)
            uncached(with_retries(promote, config))

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
        profile: str = "small",
        overrides: list = [],  # noqa: B006 - KFP pipeline parameters are declared this way
        tracking_uri: str = "",
        region: str = "india",
        start: str = "2023-10-01",
        end: str = "2023-12-31",
        max_cloud_percent: float = 20.0,
        bucket: str = "",
        prefix: str = "s2ac/export",
        n_images: int = 100,
        lambda_l1: float = 100.0,
        learning_rate: float = 0.0002,
        epochs: int = 100,
    ) -> None:
        data_args = {"profile": profile, "overrides": overrides}
        rest = {
            **data_args, "tracking_uri": tracking_uri, "lambda_l1": lambda_l1,
            "learning_rate": learning_rate, "epochs": epochs,
        }  # fmt: skip
        status = uncached(c.record_status(**data_args, tracking_uri=tracking_uri,
                                          pipeline="s2ac-training"))  # fmt: skip
        with dsl.ExitHandler(status, name="record-status"):
            with dsl.If(source == "earthengine", name="from-earth-engine"):
                exported = small(with_retries(c.export(
                    **data_args, region=region, start=start, end=end,
                    max_cloud_percent=max_cloud_percent, bucket=bucket, prefix=prefix,
                    n_images=n_images,
                ), config))  # fmt: skip
                downstream(**rest, dataset=exported.outputs["dataset"],
                           dataset_digest=exported.outputs["Output"])  # fmt: skip
            with dsl.Else(name="embedded-data"):
                synthesized = small(c.synth(**data_args))
                downstream(**rest, dataset=synthesized.outputs["dataset"],
                           dataset_digest=synthesized.outputs["Output"])  # fmt: skip

    return training
