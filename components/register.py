"""Registry: register as challenger and decide the gate; promote to champion if it passed."""

from typing import NamedTuple

from kfp import dsl


def gate(
    profile: str,
    overrides: list,
    tracking_uri: str,
    run_id: str,
    min_mean_ssim: float,
    min_mean_psnr: float,
    max_rmse_ratio_to_identity: float,
    dataset: dsl.Input[dsl.Dataset],
    evaluation: dsl.Input[dsl.Artifact],
    decision: dsl.Output[dsl.Markdown],
) -> NamedTuple("GateOutputs", passed=bool, version=str):
    """Register the run's model (alias challenger) and decide the quality gate."""
    from collections import namedtuple

    from s2ac import steps

    settings = {"gate.min_mean_ssim": min_mean_ssim, "gate.min_mean_psnr": min_mean_psnr,
                "gate.max_rmse_ratio_to_identity": max_rmse_ratio_to_identity}  # fmt: skip
    config = steps.config_for(profile, overrides, tracking_uri, settings)
    result = steps.gate(run_id, evaluation.path, dataset.path, config)
    with open(decision.path, "w") as file:
        file.write(result["markdown"])
    return namedtuple("GateOutputs", ["passed", "version"])(result["passed"], result["version"])


def promote(profile: str, overrides: list, tracking_uri: str, version: str) -> bool:
    """Move champion to ``version`` (refused if the champion changed since the gate)."""
    from s2ac import steps

    return steps.promote(version, steps.config_for(profile, overrides, tracking_uri))
