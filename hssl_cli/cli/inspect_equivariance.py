"""``hssl inspect-equivariance``: per layer and per group element, how equivariant is a model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hssl_cli.cli.options import (
    DeviceOption,
    JsonOption,
    PrecisionOption,
    QuietOption,
    SetOption,
    report_errors,
)

if TYPE_CHECKING:
    from hssl_cli.config import Recipe


def _scientific(value: float) -> str:
    """Compact scientific notation: ``1.5e-7``, ``0``."""
    if value == 0:
        return "0"
    mantissa, exponent = f"{value:.1e}".split("e")
    return f"{mantissa}e{int(exponent)}"


def _style(error: float | None, exact: float) -> str:
    """Green up to ``exact`` (the report's threshold), yellow up to 1e-2 (or ``exact`` when
    that is higher, as in bf16), red above."""
    if error is None:
        return "[dim]—[/dim]"
    colour = "green" if error <= exact else "yellow" if error <= max(1e-2, exact) else "red"
    return f"[{colour}]{_scientific(error)}[/{colour}]"


def _table(report: dict[str, Any], title: str) -> Any:
    from rich import box
    from rich.table import Table

    table = Table(title=title, box=box.SIMPLE_HEAD, padding=(0, 1))
    table.add_column("layer", no_wrap=True)
    for element in report["elements"]:
        table.add_column(element, justify="right")
    exact = report["exact_threshold"]
    for layer in report["layers"]:
        table.add_row(
            layer["name"], *(_style(layer["rel_err"][e], exact) for e in report["elements"])
        )
    table.add_section()
    table.add_row(
        "pooled", *(_style(report["invariant_err"][e], exact) for e in report["elements"])
    )
    shifts = [report["structured"][e] for e in report["elements"]]
    table.add_row("fiber shift", *(s["best_shift"] for s in shifts))
    table.add_row("shift error", *(_style(s["best_shift_err"], exact) for s in shifts))
    return table


def _sweep_line(sweep: dict[str, list[float]]) -> str:
    if sweep.get("factors"):
        return _factor_sweep_line(sweep)
    if not sweep.get("angles"):
        return ""
    model = sweep["model_invariant_err"]
    worst = max(range(len(model)), key=model.__getitem__)
    line = (
        f"rotation sweep: worst invariance error {model[worst]:.1e} at {sweep['angles'][worst]:g}°"
    )
    if "trivial_group_invariant_err" in sweep:
        line += f" (trivial-group twin: {max(sweep['trivial_group_invariant_err']):.1e})"
    return line


def _factor_sweep_line(sweep: dict[str, Any]) -> str:
    """The scale sweep: the fiber-shift error's worst factor, and the twin's for contrast."""
    pairs = [
        (error, factor)
        for error, factor in zip(sweep["model_fiber_shift_err"], sweep["factors"], strict=True)
        if error is not None
    ]
    if not pairs:
        return ""
    worst, at = max(pairs)
    line = f"scale sweep: worst fiber-shift error {worst:.1e} at factor {at:g}"
    twin = [e for e in sweep.get("unstructured_fiber_shift_err", []) if e is not None]
    if twin:
        line += f" (unstructured twin: {max(twin):.1e})"
    return line


@report_errors
def inspect_equivariance(
    checkpoint: Annotated[
        Path | None, typer.Argument(help="A checkpoint.safetensors (or use --recipe).")
    ] = None,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", "-r", help="Inspect a random-init model of a recipe.")
    ] = None,
    overrides: SetOption = None,
    group: Annotated[
        str | None, typer.Option("--group", help="Group to test (default: the model's), e.g. rot8.")
    ] = None,
    data: Annotated[
        str, typer.Option("--data", help="recipe (test images of the recipe's data) or noise.")
    ] = "recipe",
    samples: Annotated[int, typer.Option("--samples", help="Number of images.")] = 64,
    angles: Annotated[
        str,
        typer.Option("--angles", help="Continuous sweep START:STOP:STEP in degrees; 'none' skips."),
    ] = "0:360:15",
    factors: Annotated[
        str,
        typer.Option(
            "--factors",
            help="Scale models: sweep START:STOP:STEP of rescaling factors; 'auto' spans "
            "the group, 'none' skips.",
        ),
    ] = "auto",
    plot: Annotated[Path | None, typer.Option("--plot", help="Write a PNG plot here.")] = None,
    device: DeviceOption = "auto",
    precision: PrecisionOption = "auto",
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Measure ||f(T_g x) - rho(g) f(x)|| / ||f(x)|| per layer and element, and a rotation sweep."""
    from hssl_cli.api import RECIPE_SUFFIXES, load_recipe
    from hssl_cli.api import inspect_equivariance as inspect
    from hssl_cli.errors import HsslUserError
    from hssl_cli.inspection import inspection_title

    if (checkpoint is None) == (recipe is None):
        raise HsslUserError("give a CHECKPOINT or --recipe PATH (exactly one of them)")
    source: Path | Recipe | None = checkpoint
    if recipe is not None:  # the API tells a recipe file by its suffix; --recipe says so
        source = recipe if recipe.suffix.lower() in RECIPE_SUFFIXES else load_recipe(recipe)
    assert source is not None
    report = inspect(
        source,
        overrides=overrides or [],
        group=group,
        data=data,
        samples=samples,
        angles=angles,
        factors=factors,
        plot=plot,
        device=device,
        precision=precision,
    )
    title = inspection_title(report)
    if json_output:
        typer.echo(json.dumps(report))
        return
    from rich.console import Console
    from rich.markup import escape  # a path is no markup: "[/x]" in it would raise

    console = Console()
    if not console.is_terminal:  # a file or pipe: no need to squeeze the table into 80 columns
        console = Console(width=200)
    console.print(_table(report, escape(title)))
    colour = {"exactly": "green", "approximately": "yellow"}.get(
        report["verdict"].split()[0], "red"
    )
    console.print(f"verdict: [bold {colour}]{report['verdict']}[/]")
    line = _sweep_line(report["sweep"])
    if line:
        console.print(line)
    if plot is not None and not quiet:
        console.print(f"plot: {escape(str(plot))}")
