"""The README's results table, made from one evaluation folder (``make results``).

It shows ``test`` and ``ood`` side by side for the model and all five baselines, per band, and
says plainly where the model loses; the gate's decision is appended when the run wrote one
(``gate.md`` beside the evaluation folder).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from s2ac.bands import BAND_NAMES
from s2ac.evaluation.evaluate import read_evaluation
from s2ac.evaluation.report import PAPER_CAVEAT, losses, markdown

START, END = "<!-- results:start -->", "<!-- results:end -->"
ROWS = ["ssim", "psnr", "rmse", "rmse_pooled"] + [
    f"{metric}_{band}" for metric in ("rmse", "rel_rmse") for band in BAND_NAMES
]


def results_table(comparison: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Rows ``<split> <metric>``, one column per method."""
    blocks = []
    for split, table in comparison.items():
        block = table.loc[[r for r in ROWS if r in table.index]].copy()
        block.index = [f"{split} {metric}" for metric in block.index]
        blocks.append(block)
    return pd.concat(blocks)


def results_markdown(evaluation_dir: str | Path) -> str:
    """Markdown: provenance, the table, where the model loses, the gate decision if recorded."""
    record, comparison = read_evaluation(evaluation_dir)
    model = record.get("model_column")
    digest = str(record.get("dataset_digest"))[:12]
    lines = [
        f"Dataset `{record.get('dataset_name')}` (digest `{digest}`), images: "
        + ", ".join(f"{s} {n}" for s, n in record["n_images"].items())
        + f"; model `{record.get('model')}`; evaluated {record.get('created')}.",
        "",
        markdown(results_table(comparison)),
        "",
        f"Means of per-image values except `rmse_pooled` (all pixels) and `rel_rmse` (pooled RMSE "
        f"/ mean true SR). Targets are semi-synthetic, not real Level-2A ({PAPER_CAVEAT}).",
        "",
    ]
    for split, why in (record.get("missing_splits") or {}).items():
        lines += [f"- {split}: {why}"]
    if model:
        for split, table in comparison.items():
            lost = losses(table, model, record.get("non_oracle_baselines") or [])
            text = (
                "; ".join(lost)
                if lost
                else "nowhere: lower RMSE than every non-oracle baseline in every band"
            )
            lines += [f"- **Where {model} loses on {split}:** {text}."]
        for split, table in comparison.items():
            if "oracle" in table:
                ratio = [table.loc[f"rmse_{b}", model] / table.loc[f"rmse_{b}", "oracle"]
                         for b in BAND_NAMES]  # fmt: skip
                lines += [f"- Headroom on {split}: {model} RMSE is "
                          + " / ".join(f"{r:.1f}" for r in ratio)
                          + f" x the oracle's ({', '.join(BAND_NAMES)})."]  # fmt: skip
    gate = Path(evaluation_dir).parent / "gate.md"
    if gate.is_file():
        lines += ["", "Gate decision with the configured criteria:", "", gate.read_text().strip()]
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, text: str, section: str = "results") -> None:
    """Replace what lies between the ``<!-- {section}:start/end -->`` markers of ``readme``
    (atomically): ``results`` (``s2ac results``) or ``compare`` (``s2ac compare``)."""
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    content = readme.read_text()
    if start not in content or end not in content:
        raise ValueError(f"{readme}: no {start} ... {end} markers to replace")
    head, rest = content.split(start, 1)
    _, tail = rest.split(end, 1)
    temporary = readme.with_name(f".{readme.name}.tmp")
    temporary.write_text(f"{head}{start}\n{text}{end}{tail}")
    temporary.replace(readme)
