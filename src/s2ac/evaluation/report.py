"""Evaluation report: every method beside the baselines on ``test`` and ``ood``, paper-style
tables (Tables 2/3 layout), where the model loses, and figures, as one Markdown file."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd

from s2ac.bands import BAND_NAMES
from s2ac.config import EvaluateConfig
from s2ac.evaluation.metrics import aggregate

PAPER_TABLE_3 = pd.DataFrame(
    {
        "max": [0.997, 52.93, 0.0555, 0.0394],
        "min": [0.563, 25.11, 0.0022, 0.0017],
        "mean": [0.961, 42.14, 0.0097, 0.0071],
        "sd": [0.068, 5.51, 0.0075, 0.0051],
    },
    index=["ssim", "psnr", "rmse", "mae"],
)
#: Said inside every table that shows the paper's numbers.
PAPER_CAVEAT = "paper: real Sentinel-2 Level-2A targets; ours are not (semi-synthetic)"
#: Rows of the side-by-side table in the report and the README.
HEADLINE_ROWS = ["ssim", "psnr", "rmse", "rmse_pooled", "mae", "mae_pooled"] + [
    f"{metric}_{band}" for metric in ("rmse", "rel_rmse") for band in BAND_NAMES
]


def paper_table(scores: pd.DataFrame, config: EvaluateConfig) -> pd.DataFrame:
    """SSIM, PSNR, RMSE, MAE rows with max/min/mean/sd, as in the paper's Tables 2 and 3."""
    table = aggregate(scores.to_dict("records"), config)
    return table.loc[["ssim", "psnr", "rmse", "mae", "bias"]]


def paper_table_3() -> pd.DataFrame:
    """The paper's Table 3 with its caveat in a column of the table itself."""
    table = PAPER_TABLE_3.astype(object)
    table["data"] = PAPER_CAVEAT
    return table


def markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    """A Markdown table; numbers with ``digits`` decimals, text as is."""

    def cell(value: Any) -> str:
        return f"{value:.{digits}f}" if isinstance(value, int | float) else str(value)

    header = "| | " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|---" * (len(frame.columns) + 1) + "|"
    rows = [
        f"| {index} | " + " | ".join(cell(value) for value in row) + " |"
        for index, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    return "\n".join([header, rule, *rows])


def losses(table: pd.DataFrame, model: str, baselines: list[str]) -> list[str]:
    """Plain sentences: each band where a non-oracle baseline has a lower RMSE than ``model``."""
    lines = []
    for band in BAND_NAMES:
        key = f"rmse_{band}"
        better = [b for b in baselines if b in table and table.loc[key, b] < table.loc[key, model]]
        if better:
            best = min(better, key=lambda b: table.loc[key, b])
            lines.append(
                f"{band}: {model} RMSE {table.loc[key, model]:.4f} loses to "
                + ", ".join(f"{b} ({table.loc[key, b]:.4f})" for b in better)
                + f"; best {best}"
            )
    return lines


def write_report(
    out_dir: Path,
    scores: Mapping[str, Mapping[str, pd.DataFrame]],
    comparison: Mapping[str, pd.DataFrame],
    record: dict[str, Any],
    config: EvaluateConfig,
    figures: Mapping[str, str],
    title: str,
) -> Path:
    """Write ``report.md`` atomically: per split the side-by-side table, where the model loses,
    each method's paper-style table; the paper's Table 3 with its caveat; the figures."""
    lines = [f"# {title}", "", f"Dataset digest `{record.get('dataset_digest')}`.", ""]
    lines += [f"Conventions: {record['conventions']}", ""]
    lines += ["Baselines: identity (TOA as SR), dos (dark-object subtraction), 6s (6S inversion "
              "under a fixed climatology), linear (affine map of the 4 TOA bands fitted on train, "
              "20 numbers), oracle (the forward model inverted under each sample's true "
              "atmosphere and surroundings: the physical floor).", ""]  # fmt: skip
    oracle_note = (record.get("baselines") or {}).get("oracle")
    if oracle_note:
        lines += [f"Oracle: {oracle_note}.", ""]
    for split, why in (record.get("missing_splits") or {}).items():
        lines += [f"Split **{split}**: {why}.", ""]
    model = record.get("model_column")
    non_oracle = record.get("non_oracle_baselines") or []
    for split, table in comparison.items():
        n = record["n_images"][split]
        rows = [r for r in HEADLINE_ROWS if r in table.index]
        lines += [f"## {split} ({n} images): means per method", "", markdown(table.loc[rows]), ""]
        if model:
            lost = losses(table, model, non_oracle)
            where = (
                "; ".join(lost)
                if lost
                else "nowhere (lower RMSE than every non-oracle baseline in every band)."
            )
            lines += [f"Where {model} loses on {split}: {where}", ""]
    lines += ["## Paper-style tables per method", ""]
    for split, methods in scores.items():
        for name, frame in methods.items():
            share_ssim = float((frame["ssim"] > config.ssim_good).mean())
            share_psnr = float((frame["psnr"] > config.psnr_good).mean())
            lines += [f"### {name} on {split} ({len(frame)} images)", "",
                      markdown(paper_table(frame, config)), "",
                      f"SSIM > {config.ssim_good}: {share_ssim:.1%} of images; "
                      f"PSNR > {config.psnr_good} dB: {share_psnr:.1%}.", ""]  # fmt: skip
    lines += ["## Paper, Table 3 (after 100 epochs, their test set)", "",
              markdown(paper_table_3()), "", "## Figures", ""]  # fmt: skip
    lines += [f"![{name}]({path})" for name, path in figures.items()]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    temporary = out_dir / ".report.md.tmp"
    temporary.write_text("\n".join(lines) + "\n")
    os.replace(temporary, path)
    return path
