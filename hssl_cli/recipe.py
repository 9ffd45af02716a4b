"""Recipes: YAML files validated into typed configuration.

A recipe names everything a run needs (data, model, method, optimiser, training,
probe, seed), so a checkpoint that stores its resolved recipe can be rebuilt
alone. Unknown keys are errors, with a suggestion, because a silently ignored
typo (``train.epocs``) wastes a GPU day.
"""

from __future__ import annotations

import copy
import difflib
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializeAsAny,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from hssl_cli.errors import HsslUserError
from hssl_cli.groups import check_group_name


def check_registered(kind: str, name: str, registry: Iterable[str]) -> str:
    """One message for every registry lookup: the unknown name, a close match, the choices."""
    known = sorted(registry)
    if name in known:
        return name
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]!r}? " if close else ""
    raise ValueError(f"unknown {kind} {name!r}; {hint}known: {', '.join(known)}")


class Section(BaseModel):
    """Base of every recipe section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(Section):
    name: str = "digits"
    root: str | None = None
    download: bool = False
    image_size: StrictInt | None = Field(default=None, gt=0)
    path: str | None = None
    test_path: str | None = None
    limit_train: StrictInt | None = Field(default=None, gt=0)
    limit_test: StrictInt | None = Field(default=None, gt=0)
    test_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)

    @field_validator("name")
    @classmethod
    def _known_dataset(cls, name: str) -> str:
        from hssl_cli.data import DATASETS

        return check_registered("data set", name, DATASETS)


class ModelConfig(Section):
    backbone: str = "cnn"
    group: str = "rot4"
    structure: Literal["equivariant", "unstructured"] = "equivariant"
    widths: list[StrictInt] = Field(default_factory=lambda: [8, 16, 32], min_length=1)
    convs_per_stage: StrictInt = Field(default=1, ge=1)
    kernel_size: StrictInt = Field(default=3, ge=1)
    group_pool: Literal["max", "mean"] = "max"
    # ResNet-sized backbones (e2resnet18): match ResNet-18's parameters or its activations,
    # scaled by width_multiplier (tiny test models); see hssl_cli/models/equivariant_resnet.py.
    resnet_width: Literal["params", "activations"] = "params"
    width_multiplier: float = Field(default=1.0, gt=0)

    @field_validator("group")
    @classmethod
    def _known_group(cls, name: str) -> str:
        check_group_name(name)
        return name

    @field_validator("backbone")
    @classmethod
    def _known_backbone(cls, name: str) -> str:
        from hssl_cli.models import BACKBONES

        return check_registered("backbone", name, BACKBONES)

    @model_validator(mode="after")
    def _backbone_accepts(self) -> ModelConfig:
        from hssl_cli.models import BACKBONE_CHECKS

        check = BACKBONE_CHECKS.get(self.backbone)
        if check is not None:
            check(self)
        return self

    @field_validator("kernel_size")
    @classmethod
    def _odd_kernel(cls, size: int) -> int:
        if size % 2 == 0:
            raise ValueError(
                "kernel_size must be odd so that rotations map the kernel grid onto itself"
            )
        return size


class AugmentConfig(Section):
    """Base (non-group) augmentations, SimCLR's CIFAR pipeline by default (METHODS §1)."""

    crop_scale: tuple[float, float] = (0.2, 1.0)
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    hflip: float = Field(default=0.5, ge=0, le=1)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = Field(default=0.8, ge=0, le=1)
    grayscale: float = Field(default=0.2, ge=0, le=1)
    group_element: bool = False

    @field_validator("crop_scale")
    @classmethod
    def _scale_range(cls, scale: tuple[float, float]) -> tuple[float, float]:
        if not 0 < scale[0] <= scale[1] <= 1:
            raise ValueError("crop_scale must be [min, max] with 0 < min <= max <= 1")
        return scale


class MethodConfig(Section):
    """Fields every objective shares; each objective extends it with its own options."""

    name: str = "hssl"


class OptimConfig(Section):
    name: Literal["sgd", "adamw"] = "adamw"
    lr: float = Field(default=1e-3, gt=0)
    weight_decay: float = Field(default=1e-4, ge=0)
    momentum: float = Field(default=0.9, ge=0, lt=1)
    warmup_epochs: float = Field(default=0.0, ge=0)
    min_lr_ratio: float = Field(default=0.0, ge=0, le=1)


class TrainConfig(Section):
    epochs: StrictInt = Field(default=10, ge=0)  # 0 saves the random-init encoder (a baseline)
    batch_size: StrictInt = Field(default=128, ge=2)
    grad_clip: float | None = Field(default=None, gt=0)


class ProbeConfig(Section):
    steps: StrictInt = Field(default=100, ge=1)
    weight_decay: float = Field(default=1e-4, ge=0)
    batch_size: StrictInt = Field(default=512, ge=1)
    knn_k: StrictInt = Field(default=200, ge=1)
    knn_temperature: float = Field(default=0.1, gt=0)


class Recipe(Section):
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    method: SerializeAsAny[MethodConfig] = Field(
        default_factory=MethodConfig, validate_default=True
    )
    optim: OptimConfig = Field(default_factory=OptimConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    probe: ProbeConfig = Field(default_factory=ProbeConfig)
    seed: StrictInt = 0

    @field_validator("method", mode="before")
    @classmethod
    def _method_from_registry(cls, raw: Any) -> MethodConfig:
        """Validate ``method`` with the chosen objective's own config class."""
        from hssl_cli.objectives import OBJECTIVES

        if isinstance(raw, MethodConfig):
            raw = raw.model_dump()
        raw = dict(raw or {})
        name = raw.get("name", "hssl")
        return OBJECTIVES[check_registered("method", name, OBJECTIVES)].Config.model_validate(raw)

    @model_validator(mode="after")
    def _consistent(self) -> Recipe:
        from hssl_cli.objectives import OBJECTIVES

        OBJECTIVES[self.method.name].check_recipe(self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


# ---------------------------------------------------------------- loading


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise HsslUserError(
            f"recipe file not found: {path} (check the path; recipes live in recipes/)"
        )
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        where = getattr(err, "problem_mark", None)
        line = f" line {where.line + 1}" if where else ""
        raise HsslUserError(f"recipe {path}{line} is not valid YAML; fix its syntax") from None
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HsslUserError(f"recipe {path} must be a mapping of sections (data:, model:, ...)")
    return raw


def _deep_merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def read_recipe_tree(path: Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a recipe and the ``base:`` recipes it extends (paths relative to the file)."""
    path = path.resolve()
    if path in _seen:
        raise HsslUserError(f"recipe {path} extends itself through 'base:'; break the cycle")
    raw = _read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise HsslUserError(f"recipe {path}: 'base' must be a path to another recipe")
    return _deep_merge(read_recipe_tree(path.parent / base, (*_seen, path)), raw)


_OVERRIDE = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)=(.*)$", re.S)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], c) with c typed as YAML would type it."""
    match = _OVERRIDE.match(text.strip())
    if not match:
        raise HsslUserError(f"--set {text!r} is not KEY=VALUE (e.g. --set train.epochs=5)")
    key, value = match.groups()
    try:
        typed = typed_value(value)
    except yaml.YAMLError:
        typed = value
    return key.split("."), typed


_EXPONENT_FLOAT = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$")


def typed_value(text: str) -> Any:
    """``text`` typed as YAML, except that ``1e-3`` is a float (YAML 1.1 wants ``1.0e-3``)."""
    if not text.strip():
        return ""
    if _EXPONENT_FLOAT.match(text.strip()):
        return float(text)
    return yaml.safe_load(text)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    for text in overrides:
        keys, value = parse_override(text)
        node = raw
        for key in keys[:-1]:
            child = node.get(key)
            if not isinstance(child, dict):
                child = {}
                node[key] = child
            node = child
        node[keys[-1]] = value
    return raw


def _known_keys(section: str | int, method_name: str) -> list[str]:
    from hssl_cli.objectives import OBJECTIVES

    if section == "method":
        objective = OBJECTIVES.get(method_name)
        return list(objective.Config.model_fields) if objective else ["name"]
    field = Recipe.model_fields.get(str(section))
    annotation = getattr(field, "annotation", None)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return list(annotation.model_fields)
    return []


def _owners(option: str) -> list[str]:
    from hssl_cli.objectives import OBJECTIVES

    return sorted(name for name, o in OBJECTIVES.items() if option in o.Config.model_fields)


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    loc = [part for part in error["loc"] if not isinstance(part, int)]
    key = ".".join(str(part) for part in loc)
    if error["type"] == "extra_forbidden":
        parent = loc[0] if len(loc) > 1 else None
        method = raw.get("method") if isinstance(raw.get("method"), dict) else {}
        method_name = str(method.get("name", "hssl"))
        owners = _owners(str(loc[-1])) if parent == "method" and len(loc) == 2 else []
        if owners:
            return (
                f"'{key}' is not an option of method {method_name} "
                f"(it belongs to {', '.join(owners)}); remove it or change method.name"
            )
        known = _known_keys(parent, method_name) if parent else list(Recipe.model_fields)
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = (
            f"did you mean '{'.'.join([*map(str, loc[:-1]), close[0]])}'?"
            if close
            else (f"known keys here: {', '.join(known)}")
        )
        return f"unknown recipe key '{key}'; {hint}"
    message = error["msg"].removeprefix("Value error, ")
    given = error.get("input")
    shown = f" (got {given!r})" if given is not None and not isinstance(given, dict) else ""
    if not key:
        return message
    return f"bad recipe value for '{key}': {message}{shown}"


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        first = err.errors(include_url=False)[0]
        more = len(err.errors()) - 1
        extra = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        raise HsslUserError(f"{source}: {_describe(first, raw)}{extra}") from None
    except HsslUserError as err:
        raise HsslUserError(f"{source}: {err}") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, extend, override and validate a recipe file."""
    raw = apply_overrides(read_recipe_tree(Path(path)), overrides or [])
    return validate_recipe(raw, source=str(path))


def recipe_from_yaml(text: str, overrides: list[str] | None = None) -> Recipe:
    """Rebuild a recipe stored in a checkpoint (already resolved, no ``base:``)."""
    try:
        raw = yaml.safe_load(text) or {}
    except yaml.YAMLError:
        raise HsslUserError(
            "the checkpoint's stored recipe is damaged (not valid YAML); re-run pretrain"
        ) from None
    if not isinstance(raw, dict):
        raise HsslUserError(
            "the checkpoint's stored recipe is damaged (not a mapping); re-run pretrain"
        )
    return validate_recipe(apply_overrides(raw, overrides or []), source="checkpoint recipe")
