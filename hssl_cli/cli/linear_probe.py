"""``hssl linear-probe``: linear and kNN accuracy of a checkpoint's frozen features."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from hssl_cli.cli.options import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    QuietOption,
    SetOption,
    report_errors,
)

METRICS = ("top1", "top5", "knn_top1", "knn_top5")


@report_errors
def linear_probe(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint.safetensors from pretrain.")],
    overrides: SetOption = None,
    baseline: Annotated[
        bool,
        typer.Option(
            "--baseline",
            help="Also probe the random-init encoder of the same architecture "
            "(what train.epochs=0 saves) and show both, with the gain.",
        ),
    ] = False,
    plot: Annotated[
        Path | None,
        typer.Option(
            "--plot",
            help="Write a PNG: confusion matrix and t-SNE of the invariant features "
            "(next to the random init's with --baseline).",
        ),
    ] = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Fit a linear classifier (and kNN) on frozen features: train split -> test split."""
    from hssl_cli.api import linear_probe as probe
    from hssl_cli.probe import probe_title

    report = probe(
        checkpoint,
        overrides=overrides or [],
        baseline=baseline,
        plot=plot,
        device=device,
        precision=precision,
        quiet=quiet or json_output,
    )
    if json_output:
        typer.echo(json.dumps(report))
        return
    from rich.console import Console
    from rich.markup import escape  # a path is no markup: "[/x]" in it would raise

    console = Console()
    console.print(_table(report, escape(probe_title(report))))
    if plot is not None and not quiet:
        console.print(f"plot: {escape(str(plot))}")


def _table(report: dict[str, Any], title: str) -> Any:
    """One row per feature kind; with a baseline, trained, random init and gain rows."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("features")
    baseline = report.get("random_init")
    if baseline is not None:
        table.add_column("encoder")
    for column in METRICS:
        table.add_column(column, justify="right")
    for kind in ("invariant", "full"):
        trained = [f"{report[kind][c]:.2f}" for c in METRICS]
        if baseline is None:
            table.add_row(kind, *trained)
            continue
        gain = report["gain"][kind]
        table.add_row(kind, "trained", *trained)
        table.add_row("", "random init", *(f"{baseline[kind][c]:.2f}" for c in METRICS))
        table.add_row("", "[bold]gain[/]", *(f"[bold]{gain[c]:+.2f}[/]" for c in METRICS))
        if kind != "full":
            table.add_section()
    return table
