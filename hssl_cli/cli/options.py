"""Option aliases shared by several commands, and the user-error boundary."""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from hssl_cli.errors import HsslUserError, TrainingDiverged, one_line

SetOption = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set train.epochs=5 (repeatable).",
    ),
]
QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
DeviceOption = Annotated[
    str, typer.Option("--device", help="auto (CUDA when present), cpu or cuda.")
]
JsonOption = Annotated[
    bool, typer.Option("--json", help="Print one JSON object on stdout and nothing else there.")
]
RecipeOption = Annotated[
    Path, typer.Option("--recipe", "-r", help="Recipe YAML file (see recipes/).")
]
PrecisionOption = Annotated[
    str,
    typer.Option(
        "--precision",
        help="Forward passes in fp32, bf16, fp16, or recipe (its train.precision); "
        "auto: the recipe's on CUDA, fp32 on the CPU.",
    ),
]

F = TypeVar("F", bound=Callable[..., Any])


def report_errors(command: F) -> F:
    """User mistakes -> one stderr line, exit 2; divergence -> exit 1. HSSL_DEBUG=1 re-raises.

    The line is cut to :data:`~hssl_cli.errors.MESSAGE_LIMIT` characters, whatever the
    message quotes."""

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return command(*args, **kwargs)
        except HsslUserError as err:
            if os.environ.get("HSSL_DEBUG"):
                raise
            print(f"error: {one_line(err)}", file=sys.stderr)
            raise typer.Exit(2) from None
        except TrainingDiverged as err:
            if os.environ.get("HSSL_DEBUG"):
                raise
            print(f"error: {one_line(err)}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]
