"""hssl from Python: what the commands do, as functions for notebooks and scripts.

Each function is what its command runs (the command adds option parsing and printing):
:func:`pretrain` is ``hssl pretrain``, :func:`linear_probe` is ``hssl linear-probe`` and
:func:`inspect_equivariance` is ``hssl inspect-equivariance``. They take recipes and paths,
device and precision as the commands' option strings, and return plain data (a
:class:`PretrainResult`, the ``--json`` dicts). Mistakes raise
:class:`~hssl_cli.errors.HsslUserError` with the one-line message the command prints.

``import hssl_cli`` imports none of this: torch and escnn load when a function runs.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hssl_cli.errors import HsslUserError

if TYPE_CHECKING:
    from hssl_cli.config import Recipe

RECIPE_SUFFIXES = (".yaml", ".yml")


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read a recipe file (following ``base:``), apply ``KEY=VALUE`` overrides as ``--set``
    does (``"train.epochs=1"``; values typed as YAML) and validate it.

    Returns a :class:`~hssl_cli.config.Recipe` (a pydantic model: ``recipe.train.epochs``);
    validation needs neither torch nor escnn.
    """
    from hssl_cli.recipe import load_recipe as read

    return read(path, list(overrides))


def _resolved(recipe: Recipe | str | Path, overrides: Sequence[str]) -> Recipe:
    """A recipe file or object with ``overrides`` applied and validated again."""
    from hssl_cli.config import Recipe
    from hssl_cli.recipe import recipe_from_yaml

    if isinstance(recipe, Recipe):
        return recipe_from_yaml(recipe.to_yaml(), list(overrides)) if overrides else recipe
    return load_recipe(recipe, overrides)


@dataclass(frozen=True)
class PretrainResult:
    """Where a run went and how it ended."""

    run_dir: Path
    checkpoint: Path  # run_dir / checkpoint.safetensors: what linear_probe and inspect take
    epochs_done: int
    last_loss: float  # nan when no epoch ran (train.epochs=0 saves the random-init model)
    metrics: dict[str, Any] = field(default_factory=dict)  # metrics.jsonl's last record


def pretrain(
    recipe: Recipe | str | Path,
    out: str | Path,
    *,
    overrides: Sequence[str] = (),
    device: str = "auto",
    resume: bool = False,
    quiet: bool = True,
) -> PretrainResult:
    """Train the recipe's backbone with its SSL method into the run folder ``out``.

    ``recipe`` is a file or a :class:`~hssl_cli.config.Recipe` (from :func:`load_recipe`);
    ``overrides`` apply on top. ``device`` is ``auto`` (CUDA when present), ``cpu`` or
    ``cuda``; ``resume`` continues the run in ``out`` from its last finished epoch. An
    existing run in ``out`` is refused without ``resume``. ``quiet=False`` shows progress.

    Returns a :class:`PretrainResult`. Under torchrun every rank calls this and the caller
    ends the process group (``hssl pretrain --nproc`` does both).
    """
    from hssl_cli.run_files import CHECKPOINT_NAME, METRICS_NAME
    from hssl_cli.training import pretrain as train
    from hssl_cli.training import select_device

    resolved = _resolved(recipe, overrides)
    run_dir = Path(out)
    result = train(resolved, run_dir, select_device(device), resume=resume, quiet=quiet)
    metrics_file = run_dir / METRICS_NAME
    lines = metrics_file.read_text().splitlines() if metrics_file.is_file() else []
    last = json.loads(lines[-1]) if lines else {}
    return PretrainResult(
        run_dir, run_dir / CHECKPOINT_NAME, result.epochs_done, result.last_loss, last
    )


def _write_plot(draw: Any, path: Path) -> None:
    """Run ``draw()``; a file system refusal becomes a one-line user error."""
    try:
        draw()
    except OSError as err:
        raise HsslUserError(f"--plot {path}: cannot write it ({err.strerror or err})") from None


def linear_probe(
    checkpoint: str | Path,
    *,
    overrides: Sequence[str] = (),
    baseline: bool = False,
    plot: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    quiet: bool = True,
) -> dict[str, Any]:
    """Linear (L-BFGS logistic regression) and kNN accuracy of a checkpoint's frozen
    features, fit on the recipe's train split and scored on its test split.

    ``overrides`` change the probe's data or settings (``"data.limit_train=null"``).
    ``baseline=True`` also probes the random-init encoder of the same architecture (what
    ``train.epochs=0`` saves for the checkpoint's recipe) on the same data, so the report
    shows what pretraining bought. ``plot`` (a ``.png``) saves the linear probe's confusion
    matrix and a t-SNE of the invariant test features per encoder. ``precision`` is the
    forward passes' (``auto``, ``fp32``, ``bf16``, ``fp16``, ``recipe``).

    Returns the ``--json`` report: ``top1``, ``top5``, ``knn_top1``, ``knn_top5``
    (invariant features), the ``invariant`` and ``full`` blocks, data set sizes and the
    checkpoint's epoch; with ``baseline`` also ``random_init`` (same blocks) and ``gain``
    (trained minus random init); with ``plot`` the ``plot`` path.
    """
    from hssl_cli.plots import check_plot_path, plot_probe
    from hssl_cli.probe import probe_title, run_probe
    from hssl_cli.runtime import check_precision_choice
    from hssl_cli.training import select_device

    check_precision_choice(precision)
    plot_path = None if plot is None else check_plot_path(plot)
    run = run_probe(
        Path(checkpoint), list(overrides), select_device(device), quiet, precision, baseline
    )
    report = run.report
    if plot_path is not None:
        _write_plot(lambda: plot_probe(run, plot_path, probe_title(report)), plot_path)
        report["plot"] = str(plot_path)
    return report


def inspect_equivariance(
    source: str | Path | Recipe,
    *,
    overrides: Sequence[str] = (),
    group: str | None = None,
    data: str = "recipe",
    samples: int = 64,
    angles: str | Sequence[float] = "0:360:15",
    plot: str | Path | None = None,
    device: str = "auto",
    precision: str = "auto",
    factors: str | Sequence[float] = "auto",
) -> dict[str, Any]:
    """How equivariant a model is: ``||f(T_g x) - rho(g) f(x)|| / ||f(x)||`` per layer and
    group element, the pooled features' invariance, the fiber shift of the structured
    output, and a continuous rotation sweep against a trivial-group twin.

    ``source`` is a checkpoint, or a recipe (a ``.yaml`` file or a
    :class:`~hssl_cli.config.Recipe`) whose random-init model is measured; ``overrides``
    apply to its recipe. ``group`` is the group to test (default the model's); ``data``
    is ``recipe`` (test images) or ``noise``; ``angles`` is ``START:STOP:STEP`` in degrees,
    a list of angles, or ``none``; ``plot`` (a ``.png``) draws the sweep and the layers.
    A scale-group model (``scaleN``) is measured per rescaling factor against the fiber
    shift; its sweep runs over ``factors`` (``START:STOP:STEP``, a list, ``auto``: the
    group's range, or ``none``) instead of ``angles``.

    Returns the ``--json`` report: ``verdict``, ``layers``, ``invariant_err``,
    ``structured``, ``sweep``, ``exact_threshold`` and what was measured (``source``,
    ``samples``, ``data``, ``group``, ``model_group``, ``precision``).
    """
    from hssl_cli.config import Recipe
    from hssl_cli.equivariance import parse_angles, parse_factors
    from hssl_cli.inspection import inspect_model, inspection_title
    from hssl_cli.plots import check_plot_path, plot_equivariance
    from hssl_cli.runtime import check_precision_choice
    from hssl_cli.scale_equivariance import check_factors
    from hssl_cli.training import select_device

    if data not in ("recipe", "noise"):
        raise HsslUserError(f"--data {data!r}: use recipe or noise")
    check_precision_choice(precision)
    if isinstance(angles, str):
        sweep_angles = [] if angles == "none" else parse_angles(angles)
    else:
        sweep_angles = [float(angle) for angle in angles]
    sweep_factors: list[float] | None
    if isinstance(factors, str):
        sweep_factors = (
            None if factors == "auto" else [] if factors == "none" else parse_factors(factors)
        )
    else:
        sweep_factors = [float(factor) for factor in factors]
    if sweep_factors:
        check_factors(sweep_factors)
    plot_path = None if plot is None else check_plot_path(plot)
    if isinstance(source, Recipe) or Path(source).suffix.lower() in RECIPE_SUFFIXES:
        checkpoint, recipe = None, source if isinstance(source, Recipe) else Path(source)
    else:
        checkpoint, recipe = Path(source), None
    result = inspect_model(
        checkpoint,
        recipe,
        list(overrides),
        group,
        data,  # type: ignore[arg-type]  # checked above
        samples,
        sweep_angles,
        select_device(device),
        precision,
        sweep_factors,
    )
    report = {"source": result.source, "samples": result.samples, "data": data}
    report |= result.report.to_dict()
    if plot_path is not None:
        title = inspection_title(report)
        _write_plot(lambda: plot_equivariance(report, plot_path, title), plot_path)
    return report
