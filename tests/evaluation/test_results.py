"""The README's results table (``make results``) from an evaluation folder."""

import json
from pathlib import Path

import pandas as pd
import pytest

from s2ac.bands import BAND_NAMES
from s2ac.evaluation.evaluate import write_comparison
from s2ac.evaluation.results import END, START, results_markdown, update_readme

METHODS = ("pix2pix", "identity", "dos", "6s", "linear", "oracle")


def _evaluation(tmp_path: Path) -> Path:
    """A hand-made evaluation: the model beats every baseline on test, loses B8 to 6s on ood."""
    out = tmp_path / "evaluation"
    out.mkdir()
    rmse = {"pix2pix": 0.01, "identity": 0.05, "dos": 0.04, "6s": 0.02, "linear": 0.015,
            "oracle": 0.002}  # fmt: skip
    comparison = {}
    for split in ("test", "ood"):
        rows = {}
        for method in METHODS:
            value = rmse[method] * (2 if split == "ood" else 1)
            row = {"ssim": 0.9, "psnr": 35.0, "rmse": value, "rmse_pooled": value}
            row |= {f"rmse_{b}": value for b in BAND_NAMES}
            row |= {f"rel_rmse_{b}": value * 10 for b in BAND_NAMES}
            rows[method] = row
        rows["pix2pix"]["rmse_B8"] = 0.05 if split == "ood" else 0.01
        comparison[split] = pd.DataFrame(rows)
    write_comparison(comparison, out / "comparison.csv")
    record = {"dataset_name": "s2ac-embedded", "dataset_digest": "ab" * 32, "model": "m",
              "model_column": "pix2pix", "n_images": {"test": 48, "ood": 48},
              "missing_splits": {}, "non_oracle_baselines": ["identity", "dos", "6s", "linear"],
              "created": "2026-11-30T00:00:00+00:00"}  # fmt: skip
    (out / "evaluation.json").write_text(json.dumps(record))
    (tmp_path / "gate.md").write_text("| criterion |\n\nGate **FAILED** on 1 of 12 criteria.")
    return out


def test_results_show_both_splits_every_method_and_where_the_model_loses(tmp_path):
    text = results_markdown(_evaluation(tmp_path))
    header = next(line for line in text.splitlines() if line.startswith("| |"))
    assert header == "| | " + " | ".join(METHODS) + " |"
    assert "| test rmse_B2 | 0.0100 |" in text and "| ood rel_rmse_B8 |" in text
    assert "**Where pix2pix loses on test:** nowhere" in text
    loses = next(line for line in text.splitlines() if "loses on ood" in line)
    assert "B8: pix2pix RMSE 0.0500 loses to 6s (0.0400), linear (0.0300); best linear" in loses
    assert "B2" not in loses
    assert "not real Level-2A" in text and "Gate **FAILED**" in text
    assert "5.0 / 5.0 / 5.0 / 12.5 x the oracle's" in text  # ood headroom


def test_update_readme_replaces_only_the_marked_section(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{START}\nold\n{END}\noutro\n")
    update_readme(readme, "new table\n")
    assert readme.read_text() == f"intro\n{START}\nnew table\n{END}\noutro\n"
    readme.write_text("no markers")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, "x")
    # s2ac compare's section: the results section next to it is left alone
    both = f"{START}\nr\n{END}\n<!-- compare:start -->\nc\n<!-- compare:end -->\n"
    readme.write_text(both)
    update_readme(readme, "table\n", section="compare")
    assert readme.read_text() == both.replace("\nc\n", "\ntable\n")
