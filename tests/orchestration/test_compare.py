"""Both generators trained alike and tabled beside the baselines (``s2ac compare``)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from s2ac.config import load_config
from s2ac.orchestration.compare import _ratios, compare_generators, readme_section


def _row(split: str, method: str, rmse: float) -> dict:
    return {"split": split, "method": method, "ssim": 0.9, "psnr": 40.0,
            **{f"rmse_{b}": rmse for b in ("B2", "B3", "B4", "B8")}}  # fmt: skip


def test_ratios_take_the_best_non_oracle_baseline_per_band():
    rows = [_row("ood", "identity", 0.08), _row("ood", "dos", 0.02), _row("ood", "oracle", 0.004),
            _row("ood", "physics", 0.01)]  # fmt: skip
    rows[1]["rmse_B8"] = 0.2  # dos fails in the NIR: identity is the best baseline there
    ratios = _ratios(pd.DataFrame(rows)).set_index("band")
    assert (
        ratios.loc["B2", "best_baseline"] == "dos"
        and ratios.loc["B8", "best_baseline"] == "identity"
    )
    assert ratios.loc["B2", "vs_best_baseline"] == pytest.approx(0.5)
    assert ratios.loc["B8", "vs_best_baseline"] == pytest.approx(0.125)
    assert ratios.loc["B4", "vs_oracle"] == pytest.approx(2.5)


def test_unknown_generator_is_refused(tmp_path: Path):
    with pytest.raises(ValueError, match="generators must be some of"):
        compare_generators(load_config("small"), "x", "y", tmp_path, ["gan"])


@pytest.mark.slow
def test_both_generators_are_trained_scored_and_tabled(tiny_dataset: Path, tmp_path: Path):
    config = load_config("small", overrides=[
        "train.epochs=1", "train.generator_filters=4", "train.discriminator_filters=4",
        "evaluate.figures=false", f"registry.tracking_uri=sqlite:///{tmp_path}/mlflow.db",
    ])  # fmt: skip
    result = compare_generators(config, str(tiny_dataset), str(tiny_dataset), tmp_path / "cmp")
    table = result.table.set_index(["split", "method"])
    for split in ("test", "ood"):
        assert {"unet", "physics", "physics-dark-object", "identity", "dos", "6s", "linear",
                "oracle"} <= set(table.loc[split].index)  # fmt: skip
        for generator in ("unet", "physics", "physics-dark-object"):
            scored = pd.read_csv(tmp_path / "cmp" / generator / "evaluation" / "comparison.csv",
                                 index_col=0)  # fmt: skip
            assert table.loc[(split, generator), "rmse_B2"] == pytest.approx(
                scored.loc["rmse_B2", f"{split}/pix2pix"]
            )
            assert table.loc[(split, generator), "train_s"] > 0
        # the baselines are the same data scored the same way in both evaluations
        assert table.loc[(split, "6s"), "psnr"] == pytest.approx(scored.loc["psnr", f"{split}/6s"])
    record = json.loads(result.record.read_text())
    assert record["profile"] == "small" and len(record["ratios"]) == 2 * 3 * 4
    text = result.markdown.read_text()
    assert "## test" in text and "## ood" in text and "vs_best_baseline" in text
    section = readme_section(text)  # what `s2ac compare --readme` writes: nested, no title
    assert not section.startswith("# ") and "\n#### test\n" in section
    assert "\n## " not in section and "| physics-dark-object |" in section
