"""Both generators trained the same way and scored beside every baseline, in one table.

The paper's U-Net and the physics-informed generator (``train.generator``; with the climatology
and with the dark-object atmosphere prior, :data:`GENERATORS`) are each trained on
one dataset with one profile (same epochs, λ, learning rate, early stopping) and scored on
another dataset's ``test`` and ``ood`` splits beside identity, dos, 6s, linear and the oracle:
per-band RMSE, SSIM, PSNR and training time, plus each generator's RMSE as a multiple of the best
non-oracle baseline's and of the oracle's (the targets of the generalization issue are 0.5x the
former on ``ood`` and 3x the latter on ``test``). ``s2ac compare`` runs it; ``make compare`` on
the demo training data and the default evaluation data writes the README's table.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from s2ac.bands import BAND_NAMES
from s2ac.config import Config, with_changes
from s2ac.console import log

#: The generators compared, by name: the config changes that make each.
GENERATORS: dict[str, dict[str, str]] = {
    "unet": {"train.generator": "unet"},
    "physics": {"train.generator": "physics", "train.atmosphere_prior": "climatology"},
    "physics-dark-object": {"train.generator": "physics", "train.atmosphere_prior": "dark_object"},
}
BASELINES = ("identity", "dos", "6s", "linear", "oracle")


@dataclass(frozen=True)
class GeneratorComparison:
    """What :func:`compare_generators` wrote: the table (one row per split and method)."""

    table: pd.DataFrame
    markdown: Path
    record: Path


def _rows(comparison: pd.DataFrame, split: str, method: str, column: str) -> dict[str, Any]:
    values = comparison[column]
    return {"split": split, "method": method,
            **{f"rmse_{b}": float(values[f"rmse_{b}"]) for b in BAND_NAMES},
            "ssim": float(values["ssim"]), "psnr": float(values["psnr"])}  # fmt: skip


def _ratios(table: pd.DataFrame) -> pd.DataFrame:
    """Each generator's per-band RMSE over the best non-oracle baseline's and the oracle's."""
    out = []
    for split, rows in table.groupby("split", sort=False):
        rows = rows.set_index("method")
        baselines = [m for m in BASELINES if m != "oracle" and m in rows.index]
        for method in (m for m in rows.index if m not in BASELINES):
            for band in BAND_NAMES:
                column = f"rmse_{band}"
                best = rows.loc[baselines, column].idxmin()
                out.append({
                    "split": split, "method": method, "band": band,
                    "rmse": rows.loc[method, column], "best_baseline": best,
                    "vs_best_baseline": rows.loc[method, column] / rows.loc[best, column],
                    "vs_oracle": rows.loc[method, column] / rows.loc["oracle", column]
                    if "oracle" in rows.index else float("nan"),
                })  # fmt: skip
    return pd.DataFrame(out)


def render(table: pd.DataFrame, ratios: pd.DataFrame, context: dict[str, Any]) -> str:
    """The comparison as Markdown: per-split tables, then the ratios to the targets."""
    lines = [
        "# Generators beside the baselines",
        "",
        f"Trained on `{context['train_dataset']}` (digest `{context['train_digest']}`), profile "
        f"`{context['profile']}`; scored on `{context['eval_dataset']}` (digest "
        f"`{context['eval_digest']}`). Per-band RMSE (reflectance), mean SSIM and PSNR (dB) "
        "over each split's images; training time in seconds of wall clock on this machine.",
        "",
    ]
    shown = table.copy()
    for column in ("train_s", "epochs"):  # blank for the baselines, which are not trained
        shown[column] = shown[column].map(lambda v: "" if pd.isna(v) else f"{v:.0f}")
    for split, rows in shown.groupby("split", sort=False):
        lines += [f"## {split}", "", rows.drop(columns="split").to_markdown(
            index=False, floatfmt=".4f"), ""]  # fmt: skip
    lines += ["## Each generator's RMSE as a multiple of the best non-oracle baseline's and of "
              "the oracle's", "", ratios.to_markdown(
              index=False, floatfmt=("", "", "", ".4f", "", ".2f", ".2f")), ""]  # fmt: skip
    return "\n".join(lines)


def readme_section(markdown: str) -> str:
    """:func:`render`'s text as a section of a README: without its title line, its headings
    demoted to ``####`` so they nest under the README's own."""
    return markdown.split("\n", 2)[2].replace("\n## ", "\n#### ")


def compare_generators(
    config: Config, train_dataset: str, eval_dataset: str, out: str | Path,
    generators: tuple[str, ...] | list[str] = tuple(GENERATORS),
) -> GeneratorComparison:  # fmt: skip
    """Train each generator on ``train_dataset`` and score it on ``eval_dataset`` into ``out``
    (``out/<generator>/checkpoints``, ``out/<generator>/evaluation``, ``generators.md`` and
    ``generators.json``). Each training is an MLflow run, each evaluation logged into it."""
    from s2ac.data.integrity import read_manifest
    from s2ac.evaluation.evaluate import MODEL_COLUMN
    from s2ac.orchestration import stages

    unknown = [g for g in generators if g not in GENERATORS]
    if unknown or not generators:
        raise ValueError(f"generators must be some of {list(GENERATORS)}, got {list(generators)}")
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    for generator in generators:
        cfg = with_changes(config, GENERATORS[generator])
        log.info("training the %s generator on %s", generator, train_dataset)
        start = time.perf_counter()
        result = stages.train(cfg, train_dataset, folder / generator / "checkpoints")
        seconds = time.perf_counter() - start
        evaluation = stages.evaluate(
            cfg, eval_dataset, result.checkpoint_dir / "best", folder / generator / "evaluation",
            run_id=result.run_id,
        )  # fmt: skip
        for split, comparison in evaluation.comparison.items():
            if generator == generators[0]:  # the baselines' scores: the same for both
                present = [m for m in BASELINES if m in comparison.columns]
                rows += [_rows(comparison, split, m, m) for m in present]
            row = _rows(comparison, split, generator, MODEL_COLUMN)
            rows.append(row | {"train_s": round(seconds), "epochs": result.epochs_completed})
    table = pd.DataFrame(rows)
    order = {s: i for i, s in enumerate(dict.fromkeys(table["split"]))}
    table = table.sort_values("split", key=lambda s: s.map(order), kind="stable")
    ratios = _ratios(table)
    context = {
        "profile": config.profile, "train_dataset": str(train_dataset),
        "eval_dataset": str(eval_dataset),
        "train_digest": str(read_manifest(train_dataset).get("digest", ""))[:12],
        "eval_digest": str(read_manifest(eval_dataset).get("digest", ""))[:12],
    }  # fmt: skip
    markdown, record = folder / "generators.md", folder / "generators.json"
    markdown.write_text(render(table, ratios, context))
    record.write_text(json.dumps({**context, "rows": table.to_dict("records"),
                                  "ratios": ratios.to_dict("records")}, indent=2))  # fmt: skip
    return GeneratorComparison(table, markdown, record)
