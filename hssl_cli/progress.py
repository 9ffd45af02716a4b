"""Rich progress bars for long loops; silent when output is not a terminal or with --quiet."""

from __future__ import annotations

import sys

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


def stderr_console() -> Console:
    return Console(stderr=True)


def show_progress(quiet: bool) -> bool:
    return not quiet and sys.stderr.isatty()


def progress_bar(quiet: bool, console: Console | None = None) -> Progress:
    """Columns: description, bar, done/total, free-text fields (loss, img/s), elapsed, ETA."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
        TextColumn("ETA"),
        TimeRemainingColumn(),
        console=console or stderr_console(),
        disable=not show_progress(quiet),
        transient=False,
    )
