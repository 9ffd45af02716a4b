"""``hssl linear-probe``: linear and kNN accuracy of a checkpoint's frozen features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hssl_cli.cli.options import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    QuietOption,
    SetOption,
    report_errors,
)


@report_errors
def linear_probe(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint.safetensors from pretrain.")],
    overrides: SetOption = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fit a linear classifier (and kNN) on frozen features: train split -> test split."""
    from hssl_cli.probe import probe_checkpoint
    from hssl_cli.runtime import check_precision_choice
    from hssl_cli.training import select_device

    check_precision_choice(precision)
    report = probe_checkpoint(
        checkpoint, overrides or [], select_device(device), quiet or json_output, precision
    )
    if json_output:
        typer.echo(json.dumps(report))
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{report['dataset']} probe of {checkpoint} (epoch {report['epoch']})")
    table.add_column("features")
    for column in ("top1", "top5", "knn_top1", "knn_top5"):
        table.add_column(column, justify="right")
    for kind in ("invariant", "full"):
        row = report[kind]
        table.add_row(kind, *(f"{row[c]:.2f}" for c in ("top1", "top5", "knn_top1", "knn_top5")))
    Console().print(table)
