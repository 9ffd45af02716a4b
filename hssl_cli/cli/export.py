"""``hssl export``: a checkpoint's backbone as plain PyTorch that loads without escnn."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from hssl_cli.cli.options import JsonOption, report_errors


@report_errors
def export(
    checkpoint: Annotated[Path, typer.Argument(help="A checkpoint.safetensors from pretrain.")],
    out: Annotated[
        Path,
        typer.Option("--out", "-o", help="Folder for backbone.json and backbone.safetensors."),
    ],
    json_output: JsonOption = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Print nothing on success.")] = False,
) -> None:
    """Write the backbone as plain torch + safetensors (load: hssl_cli.load_backbone)."""
    from hssl_cli.export import export_checkpoint
    from hssl_cli.output_paths import check_output_folder

    summary = export_checkpoint(checkpoint, check_output_folder(out, "--out"))
    if json_output:
        typer.echo(json.dumps(summary.to_dict()))
    elif not quiet:
        typer.echo(
            f"exported {summary.backbone} ({summary.group}) to {summary.out_dir}: "
            f"{summary.parameters:,} parameters, invariant {summary.invariant_dim} / full "
            f"{summary.full_dim} features, relative error {summary.relative_error:.1e}"
        )
        typer.echo(f"load it with: hssl_cli.load_backbone({str(summary.out_dir)!r})")
