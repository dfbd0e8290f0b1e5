"""The training pipeline: data → validate → train → evaluate → gate → promote if passed."""

from typing import Any

from kfp import dsl

from pipelines.resources import on_gpu, small, uncached, with_retries
from s2ac.config import PipelineConfig


def training_pipeline(c: Any, config: PipelineConfig) -> Any:
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
        min_mean_ssim: float = 0.90,
        min_mean_psnr: float = 30.0,
        max_rmse_ratio_to_identity: float = 0.7,
    ) -> None:
        common = {"profile": profile, "overrides": overrides}
        status = uncached(c.record_status(**common, tracking_uri=tracking_uri,
                                          pipeline="s2ac-training"))  # fmt: skip
        with dsl.ExitHandler(status, name="record-status"):
            with dsl.If(source == "earthengine", name="from-earth-engine"):
                exported = with_retries(c.export(
                    **common, region=region, start=start, end=end,
                    max_cloud_percent=max_cloud_percent, bucket=bucket, prefix=prefix,
                    n_images=n_images,
                ), config)  # fmt: skip
            with dsl.Else(name="embedded-data"):
                synthesized = small(c.synth(**common))
            dataset = dsl.OneOf(exported.outputs["dataset"], synthesized.outputs["dataset"])
            digest = dsl.OneOf(exported.outputs["Output"], synthesized.outputs["Output"])
            checked = small(with_retries(c.validate(**common, dataset=dataset,
                                                    dataset_digest=digest), config))  # fmt: skip
            trained = on_gpu(c.train(
                **common, tracking_uri=tracking_uri, dataset=dataset, dataset_digest=digest,
                lambda_l1=lambda_l1, learning_rate=learning_rate, epochs=epochs,
            ), config).after(checked)  # fmt: skip
            evaluated = small(c.evaluate(
                **common, tracking_uri=tracking_uri, run_id=trained.outputs["Output"],
                dataset=dataset, model=trained.outputs["model"],
            ))  # fmt: skip
            gated = uncached(with_retries(c.gate(
                **common, tracking_uri=tracking_uri, run_id=trained.outputs["Output"],
                dataset=dataset, evaluation=evaluated.outputs["evaluation"],
                min_mean_ssim=min_mean_ssim, min_mean_psnr=min_mean_psnr,
                max_rmse_ratio_to_identity=max_rmse_ratio_to_identity,
            ), config))  # fmt: skip
            with dsl.If(gated.outputs["passed"] == True, name="gate-passed"):  # noqa: E712
                promote = c.promote(
                    **common, tracking_uri=tracking_uri, version=gated.outputs["version"]
                )
                uncached(with_retries(promote, config))

    return training
