"""An ablation study: base recipe x grid axes x seeds, expanded into named runs.

An axis is a recipe key with values (``model.structure=equivariant,unstructured``), the
special key ``recipe`` with recipe files, or, in an ablation file, a named axis whose
levels are labelled sets of overrides (``SimCLR: {recipe: ../x.yaml}``). Every run is
validated as a recipe before any starts, so a bad key or value stops the study at once.
"""

from __future__ import annotations

import itertools
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hssl_cli import safe_yaml
from hssl_cli.config import check_registered, describe_error, first_error
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import MAX_RECIPE_BYTES, typed_value

RECIPE_AXIS = "recipe"
KEY_PATTERN = re.compile(r"^[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*$")
METRICS = (
    "top1",
    "top5",
    "knn_top1",
    "knn_top5",
    "full_top1",
    "full_top5",
    "full_knn_top1",
    "full_knn_top5",
)


@dataclass(frozen=True)
class Level:
    """One value of an axis: its label, the overrides it applies, and maybe a recipe."""

    label: str
    overrides: tuple[str, ...] = ()
    recipe: Path | None = None
    value: Any = None  # the typed value of a key axis (numeric axes plot as lines)


@dataclass(frozen=True)
class Axis:
    name: str
    levels: tuple[Level, ...]

    @property
    def numeric(self) -> bool:
        return all(
            isinstance(level.value, int | float) and not isinstance(level.value, bool)
            for level in self.levels
        )


@dataclass(frozen=True)
class Run:
    """One grid point at one seed: what ``hssl pretrain`` gets, and where it writes."""

    name: str
    recipe: Path
    overrides: tuple[str, ...]
    levels: dict[str, str]
    seed: int


@dataclass
class Study:
    name: str
    recipe: Path
    axes: list[Axis] = field(default_factory=list)
    seeds: list[int] = field(default_factory=lambda: [0])
    overrides: list[str] = field(default_factory=list)
    metric: str = "top1"
    description: str = ""

    def runs(self) -> list[Run]:
        """The cartesian product of the axes' levels, each at every seed, in a stable order."""
        short = short_axis_names([axis.name for axis in self.axes])
        runs, taken = [], set()
        for levels in itertools.product(*(axis.levels for axis in self.axes)):
            recipe = self.recipe
            overrides = list(self.overrides)
            for level in levels:
                recipe = level.recipe or recipe
                overrides.extend(level.overrides)
            for seed in self.seeds:
                pairs = list(zip(self.axes, levels, strict=True))
                parts = [f"{short[axis.name]}={safe_name(level.label)}" for axis, level in pairs]
                name = "_".join([*parts, f"seed{seed}"])
                while name in taken:  # labels that differ only in unsafe characters
                    name += "+"
                taken.add(name)
                runs.append(
                    Run(
                        name=name,
                        recipe=recipe,
                        overrides=(*overrides, f"seed={seed}"),
                        levels={axis.name: level.label for axis, level in pairs},
                        seed=seed,
                    )
                )
        return runs

    def to_dict(self) -> dict[str, Any]:
        """The resolved study, written beside the runs so a result can be traced back."""
        return {
            "name": self.name,
            "recipe": str(self.recipe),
            "seeds": self.seeds,
            "metric": self.metric,
            "set": self.overrides,
            "axes": {
                axis.name: [
                    {
                        "label": level.label,
                        "set": list(level.overrides),
                        **({"recipe": str(level.recipe)} if level.recipe else {}),
                    }
                    for level in axis.levels
                ]
                for axis in self.axes
            },
        }


def short_axis_names(names: list[str]) -> dict[str, str]:
    """The shortest dotted suffix of each key that no other axis shares (for run names)."""
    short = {}
    for name in names:
        parts = name.split(".")
        for size in range(1, len(parts) + 1):
            candidate = ".".join(parts[-size:])
            if not any(
                other != name and other.split(".")[-size:] == parts[-size:] for other in names
            ):
                break
        short[name] = candidate
    return short


def safe_name(text: str) -> str:
    """Keep letters, digits and ``. _ = + -``, replace the rest: names safe in paths and shells."""
    return re.sub(r"[^A-Za-z0-9._=+-]+", "-", text).strip("-") or "run"


def format_value(value: Any) -> str:
    """The text of a YAML value as ``--set KEY=TEXT`` reads it back (JSON is valid YAML)."""
    if isinstance(value, str):
        try:
            if yaml.safe_load(value) == value:
                return value
        except yaml.YAMLError:
            pass
    return json.dumps(value)


def split_values(text: str) -> list[str]:
    """Split ``a,[1, 2],{x: 1}`` on the commas outside brackets and braces."""
    values, depth, current = [], 0, []
    for char in text:
        if char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
        if char == "," and depth == 0:
            values.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    values.append("".join(current).strip())
    return values


def parse_grid_option(text: str) -> Axis:
    """``--grid KEY=V1,V2,...``: values typed as YAML (``0.1`` a float, ``null`` None)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise HsslUserError(
            f"--grid {text!r} is not KEY=V1,V2,... (e.g. --grid model.structure=equivariant,"
            "unstructured)"
        )
    texts = split_values(rest)
    if any(not value for value in texts):
        raise HsslUserError(f"--grid {key}: an empty value in {rest!r}; remove the extra comma")
    if key == RECIPE_AXIS:
        return recipe_axis([Path(value) for value in texts])
    if not KEY_PATTERN.match(key):
        raise HsslUserError(f"--grid {key!r}: not a recipe key (dotted, e.g. model.structure)")
    levels = []
    for value_text in texts:
        try:
            value = typed_value(value_text)
        except yaml.YAMLError:
            raise HsslUserError(
                f"--grid {key}: value {value_text!r} is not valid YAML; quote or fix it"
            ) from None
        levels.append(Level(label=value_text, overrides=(f"{key}={value_text}",), value=value))
    return key_axis(key, levels)


def key_axis(key: str, levels: list[Level]) -> Axis:
    if key == "seed":
        raise HsslUserError("grid axis 'seed': use --seeds N (or seeds: in the ablation file)")
    labels = [level.label for level in levels]
    repeated = sorted({label for label in labels if labels.count(label) > 1})
    if repeated:
        raise HsslUserError(f"grid axis '{key}' repeats the value {repeated[0]!r}; list it once")
    return Axis(key, tuple(levels))


def recipe_axis(paths: list[Path]) -> Axis:
    for path in paths:
        if not path.is_file():
            raise HsslUserError(f"grid axis 'recipe': file not found: {path}; check the path")
    stems = [path.stem for path in paths]
    labels = stems if len(set(stems)) == len(stems) else [str(path) for path in paths]
    return key_axis(
        RECIPE_AXIS,
        [Level(label=label, recipe=path) for label, path in zip(labels, paths, strict=True)],
    )


def add_axes(axes: list[Axis], extra: list[Axis]) -> list[Axis]:
    """Axes given later (``--grid``) replace file axes of the same name."""
    names = {axis.name for axis in extra}
    merged = [axis for axis in axes if axis.name not in names]
    seen: set[str] = set()
    for axis in extra:
        if axis.name in seen:
            raise HsslUserError(f"--grid {axis.name} is given twice; give all its values in one")
        seen.add(axis.name)
    return [*merged, *extra]


def check_metric(metric: str) -> str:
    try:
        return check_registered("metric", metric, METRICS)
    except ValueError as err:
        raise HsslUserError(str(err)) from None


def validate_runs(study: Study) -> list[Run]:
    """Build every run's recipe now, so a mistake is reported before any training starts."""
    from hssl_cli.recipe import load_recipe

    runs = study.runs()
    for run in runs:
        try:
            recipe = load_recipe(run.recipe, list(run.overrides))
            if "tensorboard" in recipe.train.log:  # the check imports torch: only then
                from hssl_cli.training.run_log import check_log_kinds

                check_log_kinds(recipe.train.log)
        except HsslUserError as err:
            where = ", ".join(f"{axis}={label}" for axis, label in run.levels.items())
            raise HsslUserError(f"grid point {where or run.name}: {err}") from None
    return runs


# ---------------------------------------------------------------- ablation files


class AblationFile(BaseModel):
    """``recipes/ablations/*.yaml``: a study versioned like a recipe (paths relative to it)."""

    model_config = ConfigDict(extra="forbid")

    description: str = ""
    recipe: str
    seeds: int | list[int] = Field(default=1)
    metric: str = "top1"
    set: dict[str, Any] = Field(default_factory=dict)
    axes: dict[str, list[Any] | dict[str, dict[str, Any] | None]] = Field(default_factory=dict)


def seed_list(seeds: int | list[int]) -> list[int]:
    if isinstance(seeds, int):
        if seeds < 1:
            raise HsslUserError(f"seeds must be at least 1 (got {seeds})")
        return list(range(seeds))
    if not seeds or len(set(seeds)) != len(seeds):
        raise HsslUserError(f"seeds must be distinct and non-empty (got {seeds})")
    return list(seeds)


def _relative(base: Path, text: str) -> Path:
    return Path(os.path.normpath(base / text))


def _file_axis(name: str, spec: list[Any] | dict[str, Any], folder: Path) -> Axis:
    if isinstance(spec, list):
        if not spec:
            raise HsslUserError(f"axis '{name}' has no values; list at least one")
        if name == RECIPE_AXIS:
            return recipe_axis([_relative(folder, str(value)) for value in spec])
        return key_axis(
            name,
            [
                Level(label=format_value(v), overrides=(f"{name}={format_value(v)}",), value=v)
                for v in spec
            ],
        )
    levels = []
    for label, settings in spec.items():
        settings = dict(settings or {})
        recipe = settings.pop(RECIPE_AXIS, None)
        levels.append(
            Level(
                label=str(label),
                overrides=tuple(f"{k}={format_value(v)}" for k, v in settings.items()),
                recipe=_relative(folder, recipe) if recipe else None,
            )
        )
        if levels[-1].recipe and not levels[-1].recipe.is_file():
            raise HsslUserError(
                f"axis '{name}', level '{label}': recipe not found: {levels[-1].recipe}"
            )
    if not levels:
        raise HsslUserError(f"axis '{name}' has no levels; add at least one")
    return Axis(name, tuple(levels))


def load_ablation_file(path: Path) -> Study:
    if not path.is_file():
        raise HsslUserError(f"ablation file not found: {path} (they live in recipes/ablations/)")
    raw = safe_yaml.load_file(path, "ablation file", MAX_RECIPE_BYTES) or {}
    if not isinstance(raw, dict):
        raise HsslUserError(f"ablation file {path} must be a mapping (recipe:, axes:, seeds:)")
    try:
        spec = AblationFile.model_validate(raw)
    except ValidationError as err:
        error, more = first_error(err)
        problem = describe_error(error, list(AblationFile.model_fields), noun="ablation file")
        raise HsslUserError(f"ablation file {path}: {problem}{more}") from None
    folder = path.parent
    recipe = _relative(folder, spec.recipe)
    if not recipe.is_file():
        raise HsslUserError(f"ablation file {path}: recipe not found: {recipe}")
    return Study(
        name=path.stem,
        recipe=recipe,
        axes=[_file_axis(name, axis, folder) for name, axis in spec.axes.items()],
        seeds=seed_list(spec.seeds),
        overrides=[f"{key}={format_value(value)}" for key, value in spec.set.items()],
        metric=check_metric(spec.metric),
        description=spec.description,
    )
