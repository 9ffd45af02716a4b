"""The ``hssl`` command: wiring only. Commands import torch and escnn lazily,
so ``hssl --help`` stays instant."""

from __future__ import annotations

from typing import Annotated

import typer

from hssl_cli import __version__
from hssl_cli.cli.ablate import ablate
from hssl_cli.cli.export import export
from hssl_cli.cli.inspect_equivariance import inspect_equivariance
from hssl_cli.cli.linear_probe import linear_probe
from hssl_cli.cli.pretrain import pretrain
from hssl_cli.cli.recipe import app as recipe_app

app = typer.Typer(
    name="hssl",
    help="Self-supervised learning with equivariant networks (H-SSL, SimCLR, ...).",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"hssl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Show the version."),
    ] = False,
) -> None:
    """hssl: pretrain, probe and inspect equivariant SSL models."""


app.command("pretrain")(pretrain)
app.command("linear-probe")(linear_probe)
app.command("inspect-equivariance")(inspect_equivariance)
app.command("ablate")(ablate)
app.add_typer(recipe_app, name="recipe")
app.command("export")(export)


def run() -> None:
    app()
