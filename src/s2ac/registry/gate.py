"""The quality gate as a pure function: criteria (config) over an evaluation's comparison tables.

No MLflow here: :func:`decide` takes the comparison of the challenger (and the champion's scores,
if any) and returns a :class:`GateDecision` whose rows say value, rule and verdict. The registry
(:mod:`s2ac.registry.versions`) scores the champion and records the decision.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from s2ac.bands import BAND_NAMES
from s2ac.config import GateConfig, GateCriterion
from s2ac.evaluation.baselines import NON_ORACLE
from s2ac.evaluation.evaluate import MODEL_COLUMN

BEST_BASELINE, CHAMPION = "best_baseline", "champion"


@dataclass(frozen=True)
class Criterion:
    """One evaluated gate condition, as shown in one row of the gate table."""

    name: str
    split: str
    metric: str
    op: Literal[">=", "<="]
    value: float | None
    threshold: float | None
    rule: str  # e.g. "<= 0.8 x best_baseline (6s 0.0150)"
    status: Literal["pass", "fail", "n/a"]
    note: str = ""

    @property
    def passed(self) -> bool:
        return self.status != "fail"


@dataclass(frozen=True)
class GateDecision:
    criteria: tuple[Criterion, ...]
    champion_version: str | None = None
    dataset_digest: str | None = None  # what the challenger and the champion were scored on

    @property
    def passed(self) -> bool:
        return all(criterion.passed for criterion in self.criteria)

    @property
    def failed(self) -> list[Criterion]:
        return [c for c in self.criteria if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "champion_version": self.champion_version,
            "dataset_digest": self.dataset_digest,
            "criteria": [asdict(c) | {"passed": c.passed} for c in self.criteria],
        }

    def markdown(self) -> str:
        lines = ["| criterion | split | value | rule | passed |", "|---|---|---|---|---|"]
        for c in self.criteria:
            value = "-" if c.value is None else f"{c.value:.4f}"
            verdict = {"pass": "yes", "fail": "NO", "n/a": "n/a"}[c.status]
            note = f" ({c.note})" if c.note else ""
            lines.append(f"| {c.name} | {c.split} | {value} | {c.rule}{note} | {verdict} |")
        return "\n".join(lines) + f"\n\n{self.summary()}\n"

    def summary(self) -> str:
        """One sentence: passed, or failed and on what."""
        scored = f" (scored on dataset digest {str(self.dataset_digest)[:12]})"
        if self.passed:
            return f"Gate **PASSED**: all {len(self.criteria)} criteria hold{scored}."
        names = ", ".join(f"{c.name} on {c.split}" for c in self.failed)
        return f"Gate **FAILED** on {len(self.failed)} of {len(self.criteria)} criteria: {names}."


def _expand(name: str, criterion: GateCriterion) -> list[tuple[str, str]]:
    """(row name, metric) pairs: one per band when the metric holds ``{band}``."""
    if "{band}" not in criterion.metric:
        return [(name, criterion.metric)]
    return [(f"{name}[{band}]", criterion.metric.format(band=band)) for band in BAND_NAMES]


def _evaluate_criterion(
    name: str,
    metric: str,
    criterion: GateCriterion,
    comparison: dict[str, pd.DataFrame],
    model_column: str,
    gate: GateConfig,
    champion: dict[str, pd.Series] | None,
) -> Criterion:
    split, op = criterion.split, criterion.op

    def row(status: str, note: str, value: float | None = None, threshold: float | None = None,
            rule: str = "") -> Criterion:  # fmt: skip
        rule = rule or (f"{op} {criterion.bound:g}" if criterion.bound is not None
                        else f"{op} {criterion.factor:g} x {criterion.reference}")  # fmt: skip
        return Criterion(name, split, metric, op, value, threshold, rule, status, note)  # type: ignore[arg-type]

    table = comparison.get(split)
    if table is None:
        status = "fail" if gate.missing_split == "fail" else "n/a"
        return row(
            status, f"split {split} was not evaluated (gate.missing_split={gate.missing_split})"
        )
    if metric not in table.index or model_column not in table.columns:
        return row("fail", f"no {metric} for {model_column} in the evaluation")
    value = float(table.loc[metric, model_column])
    if criterion.bound is not None:
        threshold, rule = criterion.bound, f"{op} {criterion.bound:g}"
    else:
        reference = criterion.reference
        if reference == CHAMPION:
            if champion is None:
                return row("n/a", "no champion yet", value)
            ref_name, ref_value = "champion", float(champion[split][metric])
        elif reference == BEST_BASELINE:
            missing = [b for b in NON_ORACLE if b not in table.columns]
            if missing:
                return row("fail", f"baselines {missing} not evaluated", value)
            values = table.loc[metric, list(NON_ORACLE)].astype(float)
            ref_name = str(values.idxmin() if op == "<=" else values.idxmax())
            ref_value = float(values[ref_name])
        else:
            if reference not in table.columns:
                return row("fail", f"baseline {reference} not evaluated", value)
            ref_name, ref_value = str(reference), float(table.loc[metric, reference])
        threshold = criterion.factor * ref_value + criterion.offset
        factor = "" if criterion.factor == 1 else f"{criterion.factor:g} x "
        offset = "" if criterion.offset == 0 else f" {criterion.offset:+g}"
        label = ref_name if reference != BEST_BASELINE else f"best baseline {ref_name}"
        rule = f"{op} {factor}{label} ({ref_value:.4f}){offset} = {threshold:.4f}"
    if not np.isfinite(value):
        return row("fail", "not a finite number", value, threshold, rule)
    passed = value >= threshold if op == ">=" else value <= threshold
    return row("pass" if passed else "fail", "", value, threshold, rule)


def decide(
    comparison: dict[str, pd.DataFrame],
    gate: GateConfig,
    model_column: str = MODEL_COLUMN,
    champion: dict[str, pd.Series] | None = None,
    champion_version: str | None = None,
    dataset_digest: str | None = None,
) -> GateDecision:
    """The gate over one evaluation's comparison tables (split -> metric x method)."""
    criteria = [
        _evaluate_criterion(row_name, metric, criterion, comparison, model_column, gate, champion)
        for name, criterion in gate.active().items()
        for row_name, metric in _expand(name, criterion)
    ]
    return GateDecision(tuple(criteria), champion_version, dataset_digest)
