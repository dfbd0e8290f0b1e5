"""Evaluation report: paper-style tables (Tables 2/3 layout) and figures, as Markdown files."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from s2ac.config import EvaluateConfig
from s2ac.metrics import aggregate

PAPER_TABLE_3 = pd.DataFrame(
    {
        "max": [0.997, 52.93, 0.0555, 0.0394],
        "min": [0.563, 25.11, 0.0022, 0.0017],
        "mean": [0.961, 42.14, 0.0097, 0.0071],
        "sd": [0.068, 5.51, 0.0075, 0.0051],
    },
    index=["ssim", "psnr", "rmse", "mae"],
)


def paper_table(scores: pd.DataFrame, config: EvaluateConfig) -> pd.DataFrame:
    """SSIM, PSNR, RMSE, MAE rows with max/min/mean/sd, as in the paper's Tables 2 and 3."""
    table = aggregate(scores.to_dict("records"), config)
    return table.loc[["ssim", "psnr", "rmse", "mae", "bias"]]


def _markdown(frame: pd.DataFrame, digits: int = 4) -> str:
    header = "| | " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|---" * (len(frame.columns) + 1) + "|"
    rows = [
        f"| {index} | " + " | ".join(f"{value:.{digits}f}" for value in row) + " |"
        for index, row in zip(frame.index, frame.to_numpy(), strict=True)
    ]
    return "\n".join([header, rule, *rows])


def write_report(
    out_dir: Path,
    scores: Mapping[str, pd.DataFrame],
    comparison: pd.DataFrame,
    config: EvaluateConfig,
    figures: Mapping[str, str],
    title: str,
) -> Path:
    """Write ``report.md`` (tables of every method, side-by-side means, figures) atomically."""
    lines = [f"# {title}", ""]
    lines += [
        "Conventions: SSIM Gaussian 11x11 (sigma 1.5), data_range 1.0 on reflectance, band mean;",
        "PSNR over all bands, data_range 1, capped at 100 dB; errors are prediction - truth.",
        "",
        "## Means per method (overall and per band)",
        "",
        _markdown(comparison),
        "",
    ]
    for name, frame in scores.items():
        table = paper_table(frame, config)
        share_ssim = float((frame["ssim"] > config.ssim_good).mean())
        share_psnr = float((frame["psnr"] > config.psnr_good).mean())
        lines += [
            f"## {name} ({len(frame)} images)",
            "",
            _markdown(table),
            "",
            f"SSIM > {config.ssim_good}: {share_ssim:.1%} of images; "
            f"PSNR > {config.psnr_good} dB: {share_psnr:.1%}.",
            "",
        ]
    lines += ["## Paper, Table 3 (after 100 epochs, their test set)", "", _markdown(PAPER_TABLE_3)]
    lines += ["", "## Figures", ""]
    lines += [f"![{name}]({path})" for name, path in figures.items()]
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.md"
    temporary = out_dir / ".report.md.tmp"
    temporary.write_text("\n".join(lines) + "\n")
    os.replace(temporary, path)
    return path
