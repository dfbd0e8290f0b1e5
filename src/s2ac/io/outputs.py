"""Outputs never destroy what they did not create.

``s2ac data synth --out DIR`` once deleted whatever DIR held. Every command that replaces a folder
as a whole (dataset, evaluation) first asks :func:`check_replaceable`: a missing or empty folder,
or one holding this command's own kind of output, may be replaced (atomically, by the caller);
anything else only with ``--overwrite``. The check runs before any work or write.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from s2ac.errors import InputDataError


def check_replaceable(
    out_dir: Path, kind: str, is_ours: Callable[[Path], bool], overwrite: bool = False
) -> None:
    """Refuse to replace ``out_dir`` when it is a file, or a non-empty folder for which
    ``is_ours`` is false (it holds no ``kind``), unless ``overwrite``."""
    if not out_dir.exists():
        return
    if not out_dir.is_dir():
        raise InputDataError(out_dir, "exists and is not a folder", "choose another --out")
    if not any(out_dir.iterdir()) or overwrite:
        return
    try:
        ours = is_ours(out_dir)
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        ours = False
    if not ours:
        raise InputDataError(
            out_dir, f"is not empty and holds no {kind}: refusing to replace it",
            "choose an empty or new folder, or pass --overwrite to replace its contents",
        )  # fmt: skip
