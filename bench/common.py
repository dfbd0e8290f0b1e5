"""What every benchmark records beside its figures: machine, versions, commit and date."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"


def machine() -> dict[str, Any]:
    """CPU model and its matrix-relevant flags, core count, versions, git commit, UTC date."""
    import keras
    import tensorflow as tf

    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
        cwd=Path(__file__).parent, check=False,
    ).stdout.strip()  # fmt: skip
    info = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    field = lambda name: next((line.split(":", 1)[1].strip() for line in info.splitlines()  # noqa: E731
                               if line.startswith(name)), "")  # fmt: skip
    flags = set(field("flags").split())
    wanted = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16", "amx_int8")
    return {
        "cpu": field("model name") or platform.processor(), "cpus": os.cpu_count(),
        "cpu_flags": [f for f in wanted if f in flags],
        "gpus": len(tf.config.list_physical_devices("GPU")), "python": platform.python_version(),
        "tensorflow": tf.__version__, "keras": keras.__version__, "commit": commit,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
    }  # fmt: skip


def write(name: str, payload: dict[str, Any]) -> Path:
    """``bench/results/<name>.json`` with the machine record first."""
    path = RESULTS / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"machine": machine(), **payload}, indent=2) + "\n")
    print(f"wrote {path}", flush=True)
    return path
