"""``hssl recipe``: what a recipe resolves to, and every key a recipe takes."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hssl_cli.cli.options import SetOption, report_errors

app = typer.Typer(
    help="Show a resolved recipe, or list every recipe key with its type, default and help.",
    no_args_is_help=True,
)


def _method_names() -> list[str]:
    from hssl_cli.config import METHOD_CONFIGS

    return sorted(METHOD_CONFIGS)


@app.command("show")
@report_errors
def show(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML file (see recipes/).")],
    overrides: SetOption = None,
) -> None:
    """Print the fully resolved recipe as YAML: base recipes, --set overrides and defaults."""
    from hssl_cli.recipe import load_recipe

    typer.echo(load_recipe(recipe, overrides).to_yaml(), nl=False)


@app.command("keys")
@report_errors
def keys(
    method: Annotated[
        str | None,
        typer.Option(
            "--method",
            "-m",
            help="Only this method's method.* keys.",
            autocompletion=_method_names,
        ),
    ] = None,
) -> None:
    """List every recipe key: type, default and help; method.* keys name their methods."""
    from hssl_cli.recipe_keys import format_keys, recipe_keys

    typer.echo(format_keys(recipe_keys(method)))
