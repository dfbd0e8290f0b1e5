"""The gate as a pure function: each criterion's threshold, its verdict and the summary."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from s2ac.bands import BAND_NAMES
from s2ac.config import GateConfig, load_config
from s2ac.registry.gate import decide


def _table(model: dict[str, float], **baselines: dict[str, float]) -> pd.DataFrame:
    return pd.DataFrame({"pix2pix": model, **baselines})


def _rmse(values: list[float], ssim: float = 0.95, psnr: float = 35.0) -> dict[str, float]:
    return {"ssim": ssim, "psnr": psnr} | {
        f"rmse_{b}": v for b, v in zip(BAND_NAMES, values, strict=True)
    }


def test_gate_compares_each_band_with_the_best_non_oracle_baseline():
    baselines = {
        "identity": _rmse([0.05] * 4, 0.8, 25), "dos": _rmse([0.04] * 4, 0.8, 25),
        "6s": _rmse([0.02, 0.03, 0.03, 0.03], 0.9, 30), "linear": _rmse([0.03, 0.01, 0.02, 0.02]),
        "oracle": _rmse([0.001] * 4, 0.999, 60),
    }  # fmt: skip
    model = _rmse([0.015, 0.0079, 0.017, 0.015])
    comparison = {"test": _table(model, **baselines), "ood": _table(model, **baselines)}
    decision = decide(comparison, GateConfig())
    rows = {(c.name, c.split): c for c in decision.criteria}
    b2 = rows[("rmse_vs_baselines_test[B2]", "test")]
    assert b2.passed and b2.threshold == pytest.approx(0.8 * 0.02)  # best is 6s on B2
    assert "best baseline 6s" in b2.rule
    b3 = rows[("rmse_vs_baselines_ood[B3]", "ood")]
    assert b3.passed and b3.threshold == pytest.approx(0.008)  # best is linear on B3
    b4 = rows[("rmse_vs_baselines_test[B4]", "test")]
    assert not b4.passed and b4.threshold == pytest.approx(0.016)  # 0.017 > 0.8 x linear 0.02
    assert rows[("ssim_vs_champion", "test")].status == "n/a"  # no champion yet
    assert not decision.passed
    assert [c.name for c in decision.failed] == [
        "rmse_vs_baselines_test[B4]", "rmse_vs_baselines_ood[B4]",
    ]  # fmt: skip
    assert "| rmse_vs_baselines_test[B4] | test | 0.0170 | <= 0.8 x best baseline linear" in (
        decision.markdown()
    )
    # A threshold changed in the config changes the decision.
    relaxed = GateConfig.model_validate(
        {
            "criteria": {
                "rmse_vs_baselines_test": {
                    "metric": "rmse_{band}",
                    "op": "<=",
                    "reference": "best_baseline",
                    "factor": 0.9,
                },
                "rmse_vs_baselines_ood": None,
            }
        }
    )
    assert decide(comparison, relaxed).passed
    # The linear map itself never beats the best baseline by a margin.
    linear = baselines["linear"]
    assert not decide({"test": _table(linear, **baselines), "ood": _table(linear, **baselines)},
                      GateConfig()).passed  # fmt: skip


def test_gate_fails_on_missing_split_baseline_or_nan():
    baselines = {name: _rmse([0.05] * 4) for name in ("identity", "dos", "6s", "linear")}
    model = _rmse([0.01] * 4)
    only_test = {"test": _table(model, **baselines)}
    decision = decide(only_test, GateConfig())
    failed = {c.name for c in decision.failed}
    assert failed == {f"rmse_vs_baselines_ood[{b}]" for b in BAND_NAMES}
    assert "split ood was not evaluated" in decision.failed[0].note
    assert decide(only_test, GateConfig(missing_split="skip")).passed
    partial = {"test": _table(model, identity=baselines["identity"]),
               "ood": _table(model, **baselines)}  # fmt: skip
    note = decide(partial, GateConfig()).failed[0].note
    assert "['dos', '6s', 'linear'] not evaluated" in note
    broken = {split: _table(_rmse([np.nan] * 4), **baselines) for split in ("test", "ood")}
    assert len(decide(broken, GateConfig()).failed) == 8
    champion = {"test": pd.Series({"ssim": 0.951, "psnr": 34.0})}
    full = {split: _table(model, **baselines) for split in ("test", "ood")}
    decision = decide(full, GateConfig(), champion=champion, champion_version="3")
    assert {c.name for c in decision.failed} == {"ssim_vs_champion"}  # 0.95 < 0.951; 35 > 34
    tolerant = load_config(overrides=["gate.criteria.ssim_vs_champion.offset=-0.002"]).gate
    assert decide(full, tolerant, champion=champion, champion_version="3").passed
