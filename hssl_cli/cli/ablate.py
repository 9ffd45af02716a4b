"""``hssl ablate``: a grid of recipes x seeds, each pretrained and probed, then summarised."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from hssl_cli.cli.options import DeviceOption, JsonOption, QuietOption, SetOption, report_errors
from hssl_cli.errors import HsslUserError, clip, one_line
from hssl_cli.output_paths import check_output_folder

if TYPE_CHECKING:
    from hssl_cli.ablation.points import PointSummary
    from hssl_cli.ablation.study import Study

MAX_SEEDS = 1000  # a grid point's seeds are listed up front: a typo must not fill memory
MAX_JOBS = 256


def build_study(
    study_file: Path | None,
    recipe: Path | None,
    grid: list[str],
    overrides: list[str],
    seeds: int | None,
    metric: str | None,
) -> Study:
    from hssl_cli.ablation.study import (
        Study,
        add_axes,
        check_metric,
        load_ablation_file,
        parse_grid_option,
    )

    if (study_file is None) == (recipe is None):
        raise HsslUserError(
            "give either an ablation file (hssl ablate recipes/ablations/NAME.yaml) or "
            "--recipe PATH with --grid KEY=V1,V2"
        )
    if study_file is not None:
        study = load_ablation_file(study_file)
    else:
        assert recipe is not None
        if not recipe.is_file():
            raise HsslUserError(f"recipe file not found: {recipe} (recipes live in recipes/)")
        study = Study(name=recipe.stem, recipe=recipe)
    study.axes = add_axes(study.axes, [parse_grid_option(text) for text in grid])
    study.overrides = [*study.overrides, *overrides]
    if seeds is not None:
        study.seeds = list(range(seeds))
    if metric is not None:
        study.metric = check_metric(metric)
    return study


def json_safe(value: Any) -> Any:
    """NaN (a grid point with no finished seed) becomes null: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def print_summary(study: Study, summaries: list[PointSummary], out_dir: Path) -> None:
    from rich.console import Console
    from rich.markup import escape  # names and paths are the user's: "[/x]" is no markup
    from rich.table import Table

    from hssl_cli.ablation.points import METRIC_TITLES, summary_columns

    metrics = summary_columns(study)
    table = Table(title=escape(f"ablation {study.name}: mean ± std over seeds ({out_dir})"))
    for axis in study.axes:
        table.add_column(escape(axis.name))
    table.add_column("seeds done", justify="right")
    for metric in metrics:
        table.add_column(METRIC_TITLES[metric], justify="right")
    table.add_column("wall s", justify="right")
    for point in summaries:
        table.add_row(
            *(escape(point.levels[axis.name]) for axis in study.axes),
            f"{point.done}/{point.runs}",
            *(point.text(metric) for metric in metrics),
            f"{point.wall_seconds:.0f}" if point.done else "-",
        )
    console = Console()
    if not console.is_terminal:  # a log file or pipe: keep each row on one line
        console = Console(width=200)
    console.print(table)


@report_errors
def ablate(
    study_file: Annotated[
        Path | None,
        typer.Argument(help="Ablation file (recipes/ablations/*.yaml); or use --recipe."),
    ] = None,
    recipe: Annotated[
        Path | None, typer.Option("--recipe", "-r", help="Base recipe YAML (with --grid).")
    ] = None,
    grid: Annotated[
        list[str] | None,
        typer.Option(
            "--grid",
            metavar="KEY=V1,V2,...",
            help="An axis: a recipe key and its values, or recipe=A.yaml,B.yaml (repeatable).",
        ),
    ] = None,
    overrides: SetOption = None,
    seeds: Annotated[
        int | None, typer.Option("--seeds", help="Seeds 0..N-1 per grid point.")
    ] = None,
    metric: Annotated[
        str | None,
        typer.Option("--metric", help="Metric to plot: top1, full_top1, knn_top1, ..."),
    ] = None,
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="Study folder (default runs/ablations/<name>)."),
    ] = None,
    jobs: Annotated[int, typer.Option("--jobs", "-j", help="Runs in parallel (one GPU each).")] = 1,
    device: DeviceOption = "auto",
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Print each pending run's pretrain and probe commands."),
    ] = False,
    json_output: JsonOption = False,
    quiet: QuietOption = False,
) -> None:
    """Pretrain and probe every grid point x seed; skip finished runs; write results.csv,
    summary.md and summary.png in the study folder."""
    from hssl_cli.ablation.runner import (
        Interrupted,
        Outcome,
        execute_study,
        read_probe,
        run_folder,
        shell_lines,
    )
    from hssl_cli.ablation.study import validate_runs

    for option, value, most in (("--seeds", seeds, MAX_SEEDS), ("--jobs", jobs, MAX_JOBS)):
        if value is not None and not 1 <= value <= most:
            raise HsslUserError(f"{option} must be 1 to {most} (got {clip(str(value), 40)})")
    study = build_study(study_file, recipe, grid or [], overrides or [], seeds, metric)
    out_dir = out or Path("runs") / "ablations" / study.name
    runs = validate_runs(study)
    if not dry_run:
        check_output_folder(out_dir, "--out")
    if dry_run:
        pending = [run for run in runs if read_probe(run_folder(out_dir, run)) is None]
        for run in pending:
            for line in shell_lines(run, run_folder(out_dir, run), device):
                typer.echo(line)
        print(
            f"{len(pending)} of {len(runs)} runs to do ({len(runs) - len(pending)} already done)",
            file=sys.stderr,
        )
        return
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, quiet=quiet or json_output, soft_wrap=True)
    console.print(
        escape(
            f"ablation {study.name}: {len(runs)} runs ({len(runs) // len(study.seeds)} grid "
            f"points x {len(study.seeds)} seeds) in {out_dir}"
        )
    )
    finished = 0

    def report(outcome: Outcome) -> None:
        nonlocal finished
        finished += 1
        where = escape(f"[{finished}/{len(runs)}] {outcome.run.name}")
        if outcome.status == "skipped":
            console.print(f"{where}: done earlier, skipped")
        elif outcome.status == "failed":
            seconds = f"{outcome.seconds:.0f} s"
            error = escape(one_line(outcome.error, 300))
            console.print(f"{where}: [red]failed[/red] after {seconds}: {error}")
        else:
            probe = read_probe(run_folder(out_dir, outcome.run)) or {}
            console.print(
                f"{where}: top-1 {probe.get('top1', float('nan')):.2f} "
                f"(full {probe.get('full', {}).get('top1', float('nan')):.2f}) "
                f"in {outcome.seconds:.0f} s"
            )

    from hssl_cli.ablation.results import write_results
    from hssl_cli.run_files import LOG_NAME, PLOT_NAME, RESULTS_NAME, RUNS_FOLDER, SUMMARY_NAME

    try:
        outcomes = execute_study(runs, out_dir, device, jobs, report)
    except (KeyboardInterrupt, Interrupted):
        write_results(study, out_dir)
        print(
            f"interrupted: finished runs are kept in {out_dir}; run the same command again "
            "to resume",
            file=sys.stderr,
        )
        raise typer.Exit(130) from None
    rows, summaries = write_results(study, out_dir)
    failed = [outcome for outcome in outcomes if outcome.status == "failed"]
    if json_output:
        report = {
            "study": study.to_dict(),
            "out": str(out_dir),
            "runs": rows,
            "summary": [vars(point) for point in summaries],
        }
        typer.echo(json.dumps(json_safe(report)))
    elif not quiet:
        print_summary(study, summaries, out_dir)
    if not json_output:
        typer.echo(
            f"wrote {out_dir / RESULTS_NAME}, {out_dir / SUMMARY_NAME}, {out_dir / PLOT_NAME}"
        )
    if failed:
        first = one_line(failed[0].error, 300)
        print(
            f"error: {len(failed)} of {len(runs)} runs failed (first: {failed[0].run.name}: "
            f"{first}); their logs are in {out_dir / RUNS_FOLDER}/<run>/{LOG_NAME}, and "
            "a re-run retries them",
            file=sys.stderr,
        )
        raise typer.Exit(1)
