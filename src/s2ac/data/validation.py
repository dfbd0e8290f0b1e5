"""Data validation: a Great Expectations 1.x suite over per-patch statistics, run before training.

Rasters are first summarised into one table row per patch (:func:`patch_statistics`): shape, band
count, share of finite values, per-band means, min/max, the blue-band TOA-SR excess, a content hash
and, from ``manifest.json``, the source scene and window used to detect train/test leakage. The
suite (:func:`build_suite`) states what a trainable dataset looks like; :func:`validate_dataset`
runs it in an ephemeral GX context, writes the GX data docs site, ``patch_statistics.csv`` and
``summary.json``, and returns a :class:`ValidationReport` that :func:`format_report` prints.

The TFRecord reader here is deliberately tolerant: a record of the wrong length or with a missing
band becomes a table row whose shape columns fail the suite, never an exception.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from s2ac.bands import BAND_NAMES, N_BANDS
from s2ac.console import track
from s2ac.data.patches import compression_type, localize_files
from s2ac.errors import InputDataError, ObjectNotFoundError
from s2ac.io import storage

SPLITS = ("train", "val", "test", "ood")
#: Splits whose windows must keep ``buffer_px`` away from every train window of the same source.
HELD_OUT_SPLITS = ("val", "test", "ood")
STATISTICS_FILE = "patch_statistics.csv"
SUMMARY_FILE = "summary.json"
SUITE_NAME = "s2ac-patch-statistics"
SR_RANGE = (0.0, 1.5)
TOA_RANGE = (0.0, 2.0)
#: TOA blue above this is cloud (or snow / saturated bright sand): a cloud-mask leak proxy.
BRIGHT_TOA_BLUE = 0.35
_MAX_EXAMPLES = 3

STAT_COLUMNS = (
    ["patch_id", "split", "file", "record", "height", "width", "n_bands"]
    + ["toa_finite_share", "sr_finite_share", "toa_min", "toa_max", "sr_min", "sr_max"]
    + [f"{kind}_mean_{band}" for kind in ("toa", "sr") for band in BAND_NAMES]
    + ["blue_excess", "nir_excess", "bright_share", "content_hash", "problem"]
    + ["source", "row", "col", "in_manifest", "leak_window", "leak_duplicate"]
)


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


# --- reading patches ------------------------------------------------------------------------


def _tfrecord_payloads(uri: str) -> Iterator[bytes]:
    """Serialized records of a TFRecord file (GZIP if named .gz), read with TensorFlow's reader
    (CRCs checked) so a damaged file is reported with the record index, never half-parsed."""
    import tensorflow as tf

    (local,) = localize_files([uri])
    index = 0
    try:
        for record in tf.data.TFRecordDataset(local, compression_type=compression_type(local)):
            yield record.numpy()
            index += 1
    except tf.errors.OpError as exc:
        raise InputDataError(
            uri, f"record {index}: corrupt or truncated TFRecord ({exc.message.splitlines()[0]})"
        ) from exc


def _shape(n_values: int, expected_size: int | None) -> tuple[int, int]:
    """(height, width) of a flat row-major band: square if it can be, else rows of the expected
    width (a 32x16 patch of a 32 px dataset reads as height 16), else one row."""
    side = math.isqrt(n_values)
    if side * side == n_values:
        return side, side
    if expected_size and n_values % expected_size == 0:
        return n_values // expected_size, expected_size
    return 1, n_values


def _parse_example(payload: bytes) -> tuple[str | None, dict[str, np.ndarray]]:
    """patch_id and the float bands (``toa_B2`` ...) present in a serialized tf.train.Example."""
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    try:
        features = tf.train.Example.FromString(payload).features.feature
    except DecodeError:
        return None, {}
    bands = {}
    for key in (f"{kind}_{band}" for kind in ("toa", "sr") for band in BAND_NAMES):
        if key in features and features[key].WhichOneof("kind") == "float_list":
            values = features[key].float_list.value
            bands[key] = np.fromiter(values, np.float32, count=len(values))
    ids = features["patch_id"].bytes_list.value if "patch_id" in features else []
    return (ids[0].decode("utf-8", "replace") if ids else None), bands


def _record_statistics(payload: bytes, expected_size: int | None) -> dict[str, Any]:
    patch_id, bands = _parse_example(payload)
    nan, empty = float("nan"), np.empty(0, np.float32)
    lengths = sorted({values.size for values in bands.values()})
    missing = [f"{k}_{b}" for k in ("toa", "sr") for b in BAND_NAMES if f"{k}_{b}" not in bands]
    row: dict[str, Any] = {
        "patch_id": patch_id,
        "n_bands": sum(f"toa_{b}" in bands and f"sr_{b}" in bands for b in BAND_NAMES),
        "problem": "no float bands (not a tf.train.Example?)" if not bands
        else f"bands differ in length: {lengths} values" if len(lengths) > 1
        else f"missing {', '.join(missing)}" if missing else "",
    }  # fmt: skip
    row["height"], row["width"] = _shape(lengths[0], expected_size) if len(lengths) == 1 else (0, 0)
    for kind in ("toa", "sr"):
        values = np.concatenate([bands.get(f"{kind}_{band}", empty) for band in BAND_NAMES])
        finite = values[np.isfinite(values)]
        row[f"{kind}_finite_share"] = finite.size / max(values.size, 1)
        row[f"{kind}_min"] = float(finite.min()) if finite.size else nan
        row[f"{kind}_max"] = float(finite.max()) if finite.size else nan
        for band in BAND_NAMES:
            band_values = bands.get(f"{kind}_{band}", empty)
            band_values = band_values[np.isfinite(band_values)]
            row[f"{kind}_mean_{band}"] = (
                float(band_values.mean(dtype=np.float64)) if band_values.size else nan
            )
    digest = hashlib.sha256()
    for key in sorted(bands):
        digest.update(key.encode() + bands[key].tobytes())
    row["content_hash"] = digest.hexdigest()
    row["blue_excess"] = row["toa_mean_B2"] - row["sr_mean_B2"]
    row["nir_excess"] = row["toa_mean_B8"] - row["sr_mean_B8"]
    toa_blue = bands.get("toa_B2", empty)
    row["bright_share"] = float(np.mean(toa_blue > BRIGHT_TOA_BLUE)) if toa_blue.size else nan
    return row


def _load_manifest(base: str) -> dict[str, Any]:
    uri = f"{base}/manifest.json"
    try:
        manifest = json.loads(storage.read_bytes(uri))
    except ObjectNotFoundError:
        raise InputDataError(uri, "manifest.json not found", "regenerate the dataset") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputDataError(uri, f"not valid JSON ({exc})") from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("samples"), list):
        raise InputDataError(uri, "has no 'samples' list (patch_id, split, source, row, col)")
    return manifest


def _mark_leaks(table: pd.DataFrame, size: int, buffer_px: int) -> None:
    """Held-out windows closer than ``buffer_px`` (Chebyshev gap between window edges) to a train
    window of the same source leak; so does identical content in two different splits."""
    table["leak_window"] = False
    known = table["in_manifest"].astype(bool) & table["row"].notna() & table["col"].notna()
    for _source, group in table[known].groupby("source"):
        train = group[group["split"] == "train"][["row", "col"]].to_numpy(dtype=np.int64)
        if not train.size:
            continue
        for index, patch in group[group["split"].isin(HELD_OUT_SPLITS)].iterrows():
            offsets = np.abs(train - np.array([patch["row"], patch["col"]], dtype=np.int64))
            table.loc[index, "leak_window"] = bool((offsets.max(axis=1) - size < buffer_px).any())
    splits_per_hash = table.groupby("content_hash")["split"].transform("nunique")
    table["leak_duplicate"] = splits_per_hash > 1


def _read_dataset(
    dataset_dir: str | os.PathLike[str], patch_size: int | None
) -> tuple[pd.DataFrame, dict[str, Any]]:
    base = os.fspath(dataset_dir).rstrip("/")
    manifest = _load_manifest(base)
    size = patch_size or manifest.get("patch_size")
    files = [
        (split, uri)
        for split in SPLITS
        for uri in storage.list_uris(f"{base}/{split}/", recursive=False)
        if uri.endswith((".tfrecord.gz", ".tfrecord"))
    ]
    if not files:
        raise InputDataError(
            base, "no *.tfrecord.gz under train/, val/ or test/", "is this a dataset directory?"
        )
    rows = []
    for split, uri in track(files, "Reading patches"):
        name = uri.rsplit("/", 1)[-1]
        for index, payload in enumerate(_tfrecord_payloads(uri)):
            row = _record_statistics(payload, size)
            row["patch_id"] = row["patch_id"] or f"{split}/{name}#{index}"
            rows.append({**row, "split": split, "file": f"{split}/{name}", "record": index})
    if not rows:
        raise InputDataError(base, "the TFRecord files hold no records")
    table = pd.DataFrame(rows).reindex(columns=STAT_COLUMNS)
    samples = {s.get("patch_id"): s for s in manifest["samples"] if isinstance(s, dict)}
    listed = [samples.get(pid) for pid in table["patch_id"]]
    table["in_manifest"] = [
        s is not None and s.get("split") == split
        for s, split in zip(listed, table["split"], strict=True)
    ]
    table["source"] = [s.get("source") if s else None for s in listed]
    for key in ("row", "col"):
        values = pd.to_numeric([s.get(key) if s else None for s in listed], errors="coerce")
        table[key] = pd.Series(values, index=table.index).round().astype("Int64")
    window = int(size or table["height"].mode().iloc[0])
    _mark_leaks(table, window, int((manifest.get("split") or {}).get("buffer_px", 0)))
    return table, manifest


def patch_statistics(
    dataset_dir: str | os.PathLike[str], *, patch_size: int | None = None
) -> pd.DataFrame:
    """One row per patch of ``DIR/{train,val,test}/*.tfrecord.gz`` (columns :data:`STAT_COLUMNS`).

    Raises:
        InputDataError: no manifest, no TFRecord files, or a file is not a readable TFRecord.
    """
    return _read_dataset(dataset_dir, patch_size)[0]


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
    table, manifest = _read_dataset(base, patch_size)
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
