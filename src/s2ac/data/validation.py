"""Data validation: a Great Expectations 1.x suite over per-patch statistics, run before training.

The suite (:func:`build_suite`) states what a trainable dataset looks like, over the table of
:func:`s2ac.data.statistics.patch_statistics` (one row per patch); :func:`validate_dataset`
runs it in an ephemeral GX context, writes the GX data docs site, ``patch_statistics.csv`` and
``summary.json``, and returns a :class:`ValidationReport` that :func:`format_report` prints.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from s2ac.bands import BAND_NAMES, N_BANDS
from s2ac.data.statistics import BRIGHT_TOA_BLUE, read_dataset
from s2ac.io import storage

STATISTICS_FILE = "patch_statistics.csv"
SUMMARY_FILE = "summary.json"
SUITE_NAME = "s2ac-patch-statistics"
SR_RANGE = (0.0, 1.5)
TOA_RANGE = (0.0, 2.0)
_MAX_EXAMPLES = 3


class CheckResult(NamedTuple):
    """The outcome of one expectation, in plain Python values."""

    name: str  # GX expectation type, e.g. "expect_column_values_to_be_between"
    column: str  # "sr_max"; "column_A, column_B" for pairs; "" for table-level expectations
    success: bool
    observed: Any  # aggregate value, or "3 of 40 patches" for per-patch expectations
    description: str  # what the expectation means (its meta["meaning"])
    expected: str = ""
    examples: tuple[str, ...] = ()  # failing patches, "patch_id=value"


class ValidationReport(NamedTuple):
    passed: bool
    results: list[CheckResult]
    statistics_path: Path
    summary_path: Path
    docs_index: Path
    n_patches: int

    @property
    def failures(self) -> list[CheckResult]:
        return [result for result in self.results if not result.success]


# --- the suite --------------------------------------------------------------------------------


def _gx() -> Any:
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx

    return gx


#: What each expectation means, keyed by the column it checks (shown in the docs and report).
MEANINGS: dict[str, str] = {
    "rows": "Every patch listed in manifest.json is in the TFRecords, and no other.",
    "in_manifest": "Each patch is in manifest.json under the split whose folder holds it.",
    "height": "Patch height (from the length of each flat row-major float feature).",
    "width": "Patch width (a non-square feature length is read as rows of patch_size).",
    "n_bands": f"TOA and SR both carry the bands {', '.join(BAND_NAMES)}.",
    "toa_finite_share": "Share of finite TOA values: NaN/inf come from nodata or failed exports.",
    "sr_finite_share": "Share of finite SR values: NaN/inf come from nodata or failed exports.",
    "sr_min": "SR reflectance >= 0: negative values mean a wrong DN offset.",
    "sr_max": "SR reflectance <= 1.5: values in the thousands are DN not divided by 10000.",
    "toa_min": "TOA reflectance >= 0: negative values mean a wrong DN offset.",
    "toa_max": "TOA reflectance <= 2: values in the thousands are DN not divided by 10000.",
    "toa_mean_B2": "Mean TOA blue of a clear patch: Rayleigh scattering alone adds ~0.05; above "
    "0.5 is cloud, snow or DN (5 % of patches may be odd).",
    "sr_mean_B2": "Dataset-average blue SR: vegetation and water 0.02-0.06, urban ~0.1, Thar "
    "sand ~0.15-0.2; NIR in the B2 slot gives ~0.3.",
    "sr_mean_B8": "Dataset-average NIR SR: vegetation 0.25-0.5, soil and sand 0.25-0.4, water "
    "< 0.05; below 0.05 the data is all water, or blue sits in the B8 slot.",
    "sr_mean_B8, sr_mean_B2": "NIR SR above blue SR on >= 30 % of patches: true over vegetation, "
    "soil, sand and urban, false over water/snow; swapped B2/B8 on land makes it 0 %.",
    "blue_excess, nir_excess": "TOA-SR excess larger in blue than in NIR: path reflectance "
    "falls steeply with wavelength (Rayleigh ~1/lambda^4) over any surface but snow; "
    "swapped B2/B8 inverts it on water too.",
    "toa_mean_B2, sr_mean_B2": "TOA blue above SR blue: path radiance outweighs the transmission "
    "loss below the critical reflectance (~0.25); bright snow or sand may invert it.",
    "blue_excess": "Blue TOA minus SR is positive on average (fails if TOA/SR or B2/B8 swapped).",
    "bright_share": f"Share of pixels with TOA blue > {BRIGHT_TOA_BLUE:g} (cloud the mask missed, "
    "or snow), averaged over patches.",
    "patch_id": "patch_id identifies one patch.",
    "content_hash": "No two patches are identical (sha256 of their SR and TOA values).",
    "leak_window": "No val/test window lies within buffer_px of a train window of the same "
    "source (neighbouring patches leak).",
    "leak_duplicate": "No patch content appears in two splits.",
}


def build_suite(
    patch_size: int = 256, *, min_finite_share: float = 1.0, expected_patches: int | None = None
) -> Any:
    """The GX ``ExpectationSuite`` a trainable dataset meets; each expectation's meaning
    (:data:`MEANINGS`) is in its ``meta["meaning"]`` and ``notes`` (shown in the data docs).

    Per-patch checks are hard limits; the spectral checks hold over the whole dataset (or most
    patches), wide enough for Indian vegetation, desert, water, urban and some snow, but failing
    for DN-scaled values, swapped B2/B8 or TOA/SR, and leaks between splits.
    """
    gx = _gx()
    import great_expectations.expectations as gxe

    def expect(kind: type, column: str, **kwargs: Any) -> Any:
        if ", " in column:
            kwargs["column_A"], kwargs["column_B"] = column.split(", ")
        elif column != "rows":
            kwargs["column"] = column
        meaning = MEANINGS[column]
        return kind(**kwargs, meta={"meaning": meaning}, notes=meaning)

    between, in_set = gxe.ExpectColumnValuesToBeBetween, gxe.ExpectColumnValuesToBeInSet
    mean, unique = gxe.ExpectColumnMeanToBeBetween, gxe.ExpectColumnValuesToBeUnique
    pair = gxe.ExpectColumnPairValuesAToBeGreaterThanB
    (sr_lo, sr_hi), (toa_lo, toa_hi) = SR_RANGE, TOA_RANGE
    expectations = [
        expect(gxe.ExpectTableRowCountToEqual, "rows", value=expected_patches)
        if expected_patches is not None
        else expect(gxe.ExpectTableRowCountToBeBetween, "rows", min_value=1),
        expect(in_set, "in_manifest", value_set=[True]),
        expect(in_set, "height", value_set=[patch_size]),
        expect(in_set, "width", value_set=[patch_size]),
        expect(in_set, "n_bands", value_set=[N_BANDS]),
        expect(between, "toa_finite_share", min_value=min_finite_share, max_value=1.0),
        expect(between, "sr_finite_share", min_value=min_finite_share, max_value=1.0),
        expect(between, "sr_min", min_value=sr_lo, max_value=sr_hi),
        expect(between, "sr_max", min_value=sr_lo, max_value=sr_hi),
        expect(between, "toa_min", min_value=toa_lo, max_value=toa_hi),
        expect(between, "toa_max", min_value=toa_lo, max_value=toa_hi),
        expect(between, "toa_mean_B2", min_value=0.03, max_value=0.5, mostly=0.95),
        expect(mean, "sr_mean_B2", min_value=0.01, max_value=0.25),
        expect(mean, "sr_mean_B8", min_value=0.05, max_value=0.6),
        expect(pair, "sr_mean_B8, sr_mean_B2", mostly=0.3),
        expect(pair, "blue_excess, nir_excess", mostly=0.8),
        expect(pair, "toa_mean_B2, sr_mean_B2", mostly=0.8),
        expect(mean, "blue_excess", min_value=0.0, strict_min=True),
        expect(mean, "bright_share", min_value=0.0, max_value=0.2),
        expect(unique, "patch_id"),
        expect(unique, "content_hash"),
        expect(in_set, "leak_window", value_set=[False]),
        expect(in_set, "leak_duplicate", value_set=[False]),
    ]
    return gx.ExpectationSuite(name=SUITE_NAME, expectations=expectations)


# --- running it -------------------------------------------------------------------------------


def _run_suite(table: pd.DataFrame, suite: Any, site_dir: str) -> list[Any]:
    """Validate ``table`` in an ephemeral context whose data docs site is ``site_dir``."""
    gx = _gx()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = {"globally": False, "metric_calculations": False}
    site = dict(context.list_data_docs_sites()["local_site"], show_how_to_buttons=False)
    site["store_backend"] = {
        "class_name": "TupleFilesystemStoreBackend",
        "base_directory": site_dir,
    }
    context.update_data_docs_site("local_site", site)
    batch = (
        context.data_sources.add_pandas("s2ac")
        .add_dataframe_asset("patch_statistics")
        .add_batch_definition_whole_dataframe("all patches")
    )
    suite = context.suites.add(suite)
    definition = context.validation_definitions.add(
        gx.ValidationDefinition(name="s2ac-dataset", data=batch, suite=suite)
    )
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name="s2ac-dataset",
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data docs")],
            result_format={
                "result_format": "COMPLETE",
                "unexpected_index_column_names": ["patch_id"],
            },
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": table})
    order = {expectation.id: i for i, expectation in enumerate(suite.expectations)}
    return sorted(
        next(iter(result.run_results.values())).results,
        key=lambda r: order.get(r.expectation_config.id, len(order)),
    )


def _plain(value: Any) -> Any:
    """JSON-friendly copy of a GX observed value (numpy scalars to Python)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value if isinstance(value, str | int | float | bool | type(None)) else str(value)


def _expected(kind: str, kwargs: dict[str, Any]) -> str:
    low, high = kwargs.get("min_value"), kwargs.get("max_value")
    if "value_set" in kwargs:
        text = "in {" + ", ".join(str(v) for v in kwargs["value_set"]) + "}"
    elif "unique" in kind:
        text = "unique"
    elif "column_A" in kwargs:
        text = f"{kwargs['column_A']} > {kwargs['column_B']}"
    elif "value" in kwargs:
        text = f"= {kwargs['value']}"
    elif low is not None and high is not None:
        text = f"in [{low:g}, {high:g}]"
    else:
        text = (
            f"{'>' if kwargs.get('strict_min') else '>='} {low:g}"
            if low is not None
            else f"<= {high:g}"
        )
    if "mean" in kind:
        text = f"mean {text}"
    mostly = kwargs.get("mostly")
    return f"{text} for >= {mostly:.0%} of patches" if mostly and mostly < 1 else text


def _check_result(result: Any) -> CheckResult:
    config = result.expectation_config
    kwargs = dict(config.kwargs)
    column = kwargs.get("column") or ", ".join(
        kwargs[k] for k in ("column_A", "column_B") if k in kwargs
    )
    found = dict(result.result or {})
    info = result.exception_info or {}
    errors = [info] if "raised_exception" in info else list(info.values())
    messages = [e.get("exception_message") for e in errors if e.get("raised_exception")]
    if messages:
        observed: Any = f"error: {messages[0]}"
    elif "unexpected_count" in found:
        observed = f"{found['unexpected_count']} of {found.get('element_count')} patches"
    else:
        observed = _plain(found.get("observed_value"))
    examples = []
    for item in (found.get("unexpected_index_list") or [])[:_MAX_EXAMPLES]:
        item = item if isinstance(item, dict) else {"patch_id": item}
        value = _plain(item.get(kwargs.get("column"), ""))
        value = f"{value:.4g}" if isinstance(value, float) else value
        examples.append(f"{item['patch_id']}={value}" if value != "" else str(item["patch_id"]))
    return CheckResult(
        name=config.type,
        column=column,
        success=bool(result.success),
        observed=observed,
        description=(config.meta or {}).get("meaning", ""),
        expected=_expected(config.type, kwargs),
        examples=tuple(examples),
    )


def _publish(site_dir: Path, out_dir: Path) -> None:
    """Move the built site into ``out_dir``: folders first, index.html last (atomic rename)."""
    for entry in sorted(site_dir.iterdir(), key=lambda p: p.name == "index.html"):
        target = out_dir / entry.name
        if target.is_dir():
            stale = out_dir / f".{entry.name}.old"
            shutil.rmtree(stale, ignore_errors=True)
            os.replace(target, stale)
            os.replace(entry, target)
            shutil.rmtree(stale, ignore_errors=True)
        else:
            os.replace(entry, target)


def validate_dataset(
    dataset_dir: str | os.PathLike[str],
    docs_dir: str | os.PathLike[str] | None = None,
    *,
    patch_size: int | None = None,
    min_finite_share: float = 1.0,
) -> ValidationReport:
    """Run the suite over ``dataset_dir`` (local or gs://) and write the results to ``docs_dir``.

    ``docs_dir`` (default ``DIR/validation``, must be local) receives the GX data docs site
    (``index.html``), ``patch_statistics.csv`` and, last, ``summary.json``; every file appears
    whole or not at all. ``patch_size`` defaults to the manifest's.

    Raises:
        InputDataError: the dataset cannot be read at all (no manifest, no TFRecords, corrupt
            file). Bad patches do not raise: they fail expectations in the report.
    """
    base = os.fspath(dataset_dir).rstrip("/")
    if docs_dir is None and storage.is_gcs(base):
        raise ValueError(f"{base}: pass a local docs_dir to validate a gs:// dataset")
    out_dir = Path(docs_dir if docs_dir is not None else Path(base) / "validation").absolute()
    table, manifest = read_dataset(base, patch_size)
    size = int(patch_size or manifest.get("patch_size") or table["height"].mode().iloc[0])
    suite = build_suite(
        size, min_finite_share=min_finite_share, expected_patches=len(manifest["samples"])
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gx-site-", dir=out_dir) as site_dir:
        results = [_check_result(r) for r in _run_suite(table, suite, site_dir)]
        _publish(Path(site_dir), out_dir)
    passed = all(result.success for result in results)
    statistics_path, summary_path = out_dir / STATISTICS_FILE, out_dir / SUMMARY_FILE
    storage.write_bytes(statistics_path, table.to_csv(index=False).encode())
    summary = {
        "dataset": base,
        "passed": passed,
        "n_patches": len(table),
        "patch_size": size,
        "n_failed": sum(not r.success for r in results),
        "statistics": STATISTICS_FILE,
        "data_docs": "index.html",
        "results": [{**r._asdict(), "examples": list(r.examples)} for r in results],
    }
    storage.write_bytes(summary_path, json.dumps(summary, indent=2, default=_plain).encode())
    return ValidationReport(
        passed, results, statistics_path, summary_path, out_dir / "index.html", len(table)
    )


def format_report(report: ValidationReport) -> str:
    """Failed expectations, one block each, for the CLI and pipeline logs."""
    verdict = "passed" if report.passed else "FAILED"
    lines = [
        f"Data validation {verdict}: {len(report.failures)} of {len(report.results)} "
        f"expectations failed on {report.n_patches} patches (data docs: {report.docs_index})"
    ]
    for result in report.failures:
        target = f"({result.column})" if result.column else ""
        observed = (
            f"{result.observed:.4g}" if isinstance(result.observed, float) else result.observed
        )
        line = f"  FAILED {result.name}{target}: {observed}, expected {result.expected}"
        if result.examples:
            line += f" (e.g. {', '.join(result.examples)})"
        lines += [line, f"         {result.description}"]
    return "\n".join(lines)
