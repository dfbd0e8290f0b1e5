"""Logging and progress output shared by the CLI and long-running library functions.

Library code reports progress through :func:`track`, which draws a rich progress bar on a terminal
and stays quiet in logs, KFP pods and tests (no TTY), where it logs a start and an end line instead.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich.console import Console
from rich.logging import RichHandler
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

T = TypeVar("T")
console = Console(stderr=True)
log = logging.getLogger("s2ac")


def setup_logging(verbosity: int = 0) -> None:
    """-q -> WARNING, default INFO, -v -> DEBUG for s2ac (and INFO for libraries)."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    handler = RichHandler(console=console, show_path=False, rich_tracebacks=False, markup=False)
    logging.basicConfig(level=logging.WARNING, handlers=[handler], format="%(message)s", force=True)
    logging.getLogger("s2ac").setLevel(level)


def track(items: Iterable[T], description: str, total: int | None = None) -> Iterator[T]:
    """Iterate with a progress bar on a terminal, or with start/end log lines elsewhere."""
    if total is None and hasattr(items, "__len__"):
        total = len(items)  # type: ignore[arg-type]
    if not console.is_terminal or not log.isEnabledFor(logging.INFO):
        start = time.monotonic()
        log.info("%s: %s items...", description, total if total is not None else "?")
        count = 0
        for count, item in enumerate(items, start=1):  # noqa: B007 - count used after the loop
            yield item
        log.info("%s: %d done in %.1f s", description, count, time.monotonic() - start)
        return
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(description, total=total)
        for item in items:
            yield item
            progress.advance(task)
