"""Build the 6S look-up table: run 6S in parallel (resumably), integrate bands, write one file.

The expensive part (thousands of 6S runs) is cached run by run in a SQLite side file next to the
output, committed after every run, so a killed or crashed build continues where it stopped. The
output is written to a temporary name and renamed, so it is never half-written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from datetime import UTC, datetime
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from s2ac.bands import BAND_NAMES, SATELLITES
from s2ac.console import log, track
from s2ac.physics import adjacency, band_tables
from s2ac.physics.grid import DEFAULT_GRID, LutGrid
from s2ac.physics.sixs import SPECTRUM_RANGE_UM, Conditions, run_spectrum, sixs_version

#: Spectral quantities kept per run (rows of the cached array), see :class:`sixs.Spectrum`.
CACHED = ("gas_transmittance", "t_down", "t_up", "spherical_albedo", "path_reflectance")
FORMAT = "s2ac-lut/1"
RunCallback = Callable[[int, int], None]


class RunCache:
    """Finished 6S runs (spectra) in SQLite, keyed by run; safe to reopen after a crash."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = sqlite3.connect(path)
        self._db.execute("CREATE TABLE IF NOT EXISTS runs (key TEXT PRIMARY KEY, data BLOB)")
        self._db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")
        provenance = json.dumps({"sixs": sixs_version(), "range_um": SPECTRUM_RANGE_UM})
        stored = self._meta("provenance")
        if stored is None:
            self._set_meta("provenance", provenance)
        elif stored != provenance:
            raise RuntimeError(
                f"{path}: cached runs come from {stored}, not {provenance}; "
                "delete the file to rebuild"
            )
        self._db.commit()

    def _meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def keys(self) -> set[str]:
        return {row[0] for row in self._db.execute("SELECT key FROM runs")}

    def put(self, key: str, wavelength: np.ndarray, solar: np.ndarray, data: np.ndarray) -> None:
        """Store one run; the spectral grid (wavelengths, solar weights) is stored once."""
        grid = json.dumps({"wavelength": wavelength.tolist(), "solar": solar.tolist()})
        stored = self._meta("grid")
        if stored is None:
            self._set_meta("grid", grid)
        elif json.loads(stored)["wavelength"] != wavelength.tolist():
            raise RuntimeError("6S returned a different spectral grid than earlier runs")
        blob = np.ascontiguousarray(data, dtype=np.float32).tobytes()
        self._db.execute("INSERT OR REPLACE INTO runs VALUES (?, ?)", (key, blob))
        self._db.commit()

    def spectral_grid(self) -> tuple[np.ndarray, np.ndarray]:
        stored = self._meta("grid")
        if stored is None:
            raise RuntimeError(f"{self.path}: no runs cached yet")
        grid = json.loads(stored)
        return np.asarray(grid["wavelength"]), np.asarray(grid["solar"])

    def load(self, keys: list[str]) -> dict[str, np.ndarray]:
        n = len(self.spectral_grid()[0])
        out: dict[str, np.ndarray] = {}
        for key, blob in self._db.execute("SELECT key, data FROM runs"):
            out[key] = np.frombuffer(blob, dtype=np.float32).reshape(len(CACHED), n)
        missing = [k for k in keys if k not in out]
        if missing:
            raise RuntimeError(f"{len(missing)} runs missing from {self.path}, e.g. {missing[0]}")
        return {k: out[k] for k in keys}

    def close(self) -> None:
        self._db.close()


def _run_chunk(
    runs: list[tuple[str, Conditions]],
) -> list[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Worker: 6S spectral runs of one chunk -> (key, wavelength, solar, stacked quantities)."""
    results = []
    for key, conditions in runs:
        spectrum = run_spectrum(conditions)
        data = np.stack([getattr(spectrum, name) for name in CACHED])
        results.append((key, spectrum.wavelength, spectrum.solar, data))
    return results


def execute_runs(
    pending: list[tuple[str, Conditions]], workers: int, chunk: int
) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """Yield finished runs as they complete, serially or in a process pool."""
    chunks = [pending[i : i + chunk] for i in range(0, len(pending), chunk)]
    if workers <= 1:
        for part in chunks:
            yield from _run_chunk(part)
        return
    # spawn: never fork a process that may hold threads (TensorFlow, rich) into 6S workers.
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        queue = iter(chunks)
        running: set[Future] = set()
        try:
            for part in queue:  # keep at most 2 chunks per worker in flight
                running.add(pool.submit(_run_chunk, part))
                if len(running) >= 2 * workers:
                    break
            while running:
                done, running = wait(running, return_when=FIRST_COMPLETED)
                for future in done:
                    yield from future.result()
                    part = next(queue, None)
                    if part is not None:
                        running.add(pool.submit(_run_chunk, part))
        finally:
            for future in running:
                future.cancel()


def build_lut(
    out_path: str | Path,
    grid: LutGrid = DEFAULT_GRID,
    workers: int = 2,
    *,
    chunk: int = 4,
    cache_path: str | Path | None = None,
    keep_cache: bool = False,
    on_run: RunCallback | None = None,
) -> Path:
    """Run 6S over ``grid`` and write the look-up table to ``out_path`` (``.npz``).

    Finished runs are cached in ``cache_path`` (default ``<out_path>.runs.sqlite``), so calling
    again after an interruption only runs what is missing; the cache is deleted after a successful
    build unless ``keep_cache``. ``on_run(done, total)`` is called after each run is cached (e.g. to
    report progress or, in tests, to interrupt). Returns the output path.
    """
    out_path = Path(out_path)
    if out_path.suffix != ".npz":
        raise ValueError(f"{out_path}: the look-up table is written as .npz")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    out_path.parent.mkdir(parents=True, exist_ok=True)
    cache_file = (
        Path(cache_path) if cache_path else out_path.with_name(out_path.name + ".runs.sqlite")
    )
    runs = grid.runs()
    cache = RunCache(cache_file)
    try:
        done_keys = cache.keys()
        pending = [(k, c) for k, c in runs.items() if k not in done_keys]
        log.info(
            "LUT: %d 6S runs in the grid, %d cached in %s, %d to run on %d worker(s)",
            len(runs), len(runs) - len(pending), cache_file, len(pending), workers,
        )  # fmt: skip
        start = time.monotonic()
        results = execute_runs(pending, workers, chunk)
        try:
            for count, (key, wavelength, solar, data) in enumerate(
                track(results, "6S runs", total=len(pending)), start=1
            ):
                cache.put(key, wavelength, solar, data)
                if on_run is not None:
                    on_run(count, len(pending))
        finally:
            results.close()  # stop the worker pool now, also when interrupted
        wavelength, solar = cache.spectral_grid()
        spectra = cache.load(list(runs))
        tables = band_tables.tables(grid, spectra, wavelength, solar)
        metadata = _metadata(grid, len(runs), len(pending), time.monotonic() - start)
        _write(out_path, tables, metadata)
    finally:
        cache.close()
    adjacency.add_adjacency_tables(out_path, grid, workers)
    if not keep_cache:
        cache_file.unlink(missing_ok=True)
    log.info("LUT written to %s (%.1f MB)", out_path, out_path.stat().st_size / 1e6)
    return out_path


def _metadata(grid: LutGrid, n_runs: int, n_ran: int, seconds: float) -> dict[str, object]:
    axes = {name: axis.describe() for name, axis in grid.axes().items()}
    return {
        "format": FORMAT,
        "sixs_version": sixs_version(),
        "built": datetime.now(UTC).isoformat(timespec="seconds"),
        "bands": list(BAND_NAMES),
        "satellites": list(SATELLITES),
        "aerosol_models": list(grid.aerosol_models),
        "axes": axes,
        "variables": band_tables.VARIABLES,
        "grid": grid.to_dict(),
        "runs": n_runs,
        "runs_this_build": n_ran,
        "build_seconds_this_build": round(seconds, 1),
        "spectral_range_um": list(SPECTRUM_RANGE_UM),
        "conventions": {
            "coupling": "rho_toa = path + T_g * t_down * t_up * rho_s / (1 - S * rho_s)",
            "path": "6S intrinsic atmospheric reflectance, gaseous absorption included",
            "relative_azimuth": "|solar azimuth - view azimuth|, 0 = backscattering (6S)",
            "aot550": "aerosol optical thickness at 550 nm above the target",
            "water_vapour": "column above the target",
            "ozone": "column above the target",
        },
    }


def _write(out_path: Path, tables: dict[str, np.ndarray], metadata: dict[str, object]) -> None:
    arrays = {name: np.asarray(values, dtype=np.float32) for name, values in tables.items()}
    arrays["metadata"] = np.array(json.dumps(metadata))
    tmp = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp.npz")
    try:
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
