"""Recipes: reading YAML files into a validated :class:`~hssl_cli.config.Recipe`.

A recipe names everything a run needs (data, model, method, optimiser, training,
probe, seed), so a checkpoint that stores its resolved recipe can be rebuilt alone.
This module reads files, follows ``base:`` inheritance, applies ``--set`` overrides and
turns validation errors into one line; the schema itself is :mod:`hssl_cli.config`.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from hssl_cli import safe_yaml
from hssl_cli.config import (
    Recipe,
    describe_error,
    error_key,
    first_error,
    keys_at,
    methods_with_option,
)
from hssl_cli.errors import HsslUserError, clip

# A recipe is a page of text (the largest shipped is 2 KiB): 64 KiB is room to spare.
MAX_RECIPE_BYTES = 64 * 1024
# ``base:`` chains in the wild are two or three deep.
MAX_BASE_DEPTH = 16
# The deepest recipe key is method.base_method.augment.crop_scale.
MAX_KEY_PARTS = 8

# ---------------------------------------------------------------- loading


def _resolve(path: Path) -> Path:
    try:
        return path.resolve()
    except RuntimeError:  # Python < 3.13: a symbolic link loop
        raise HsslUserError(
            f"recipe {clip(str(path))} is a symbolic link that leads back to itself; "
            "point it at a file"
        ) from None
    except (OSError, ValueError) as err:
        raise HsslUserError(f"recipe path {clip(str(path))!r} cannot be used ({err})") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    shown = clip(str(path))
    if not path.is_file():
        raise HsslUserError(
            f"recipe file not found: {shown} (check the path; recipes live in recipes/)"
        )
    raw = safe_yaml.load_file(path, "recipe", MAX_RECIPE_BYTES)
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise HsslUserError(f"recipe {shown} must be a mapping of sections (data:, model:, ...)")
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
    path = _resolve(path)
    if path in _seen:
        raise HsslUserError(
            f"recipe {clip(str(path))} extends itself through 'base:'; break the cycle"
        )
    if len(_seen) >= MAX_BASE_DEPTH:
        raise HsslUserError(
            f"recipe {clip(str(_seen[0]))}: its 'base:' chain is more than {MAX_BASE_DEPTH} "
            "recipes long; extend a recipe nearer the root"
        )
    raw = _read_yaml(path)
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str) or not base.strip():
        raise HsslUserError(f"recipe {clip(str(path))}: 'base' must be a path to another recipe")
    return _deep_merge(read_recipe_tree(path.parent / base, (*_seen, path)), raw)


_OVERRIDE = re.compile(r"^([A-Za-z_][\w]*(?:\.[A-Za-z_][\w]*)*)=(.*)$", re.S)


def parse_override(text: str) -> tuple[list[str], Any]:
    """``a.b=c`` -> (["a", "b"], c) with c typed as YAML would type it."""
    match = _OVERRIDE.match(text.strip())
    if not match:
        raise HsslUserError(f"--set {clip(text)!r} is not KEY=VALUE (e.g. --set train.epochs=5)")
    key, value = match.groups()
    keys = key.split(".")
    if len(keys) > MAX_KEY_PARTS:
        raise HsslUserError(
            f"--set {clip(key)!r}: no recipe key is nested {len(keys)} deep; "
            "`hssl recipe keys` lists them"
        )
    try:
        typed = typed_value(value)
    except yaml.YAMLError:
        typed = value  # not YAML (an alias, a tag that does not fit, a lone bracket): text
    return keys, typed


def typed_value(text: str) -> Any:
    """``text`` typed as a recipe's YAML types it (``1e-3`` a float, see :mod:`safe_yaml`)."""
    if not text.strip():
        return ""
    return safe_yaml.load(text)


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


def _describe(error: dict[str, Any], raw: dict[str, Any]) -> str:
    """One line for a recipe's first validation error; an option of another method says so."""
    if error["type"] != "extra_forbidden":
        return describe_error(error, [])
    parts = error_key(error)
    if not parts:
        return describe_error(error, [])
    method = raw.get("method") if isinstance(raw.get("method"), dict) else {}
    method_name = clip(str(method.get("name", "hssl")))
    if parts[0] == "method" and len(parts) == 2:
        owners = methods_with_option(parts[-1])
        if owners:
            return (
                f"'{'.'.join(parts)}' is not an option of method {method_name} "
                f"(it belongs to {', '.join(owners)}); remove it or change method.name"
            )
    return describe_error(error, keys_at(parts[:-1], method_name))


def validate_recipe(raw: dict[str, Any], source: str = "recipe") -> Recipe:
    try:
        return Recipe.model_validate(raw)
    except ValidationError as err:
        error, more = first_error(err)
        raise HsslUserError(f"{clip(source)}: {_describe(error, raw)}{more}") from None
    except HsslUserError as err:
        raise HsslUserError(f"{clip(source)}: {err}") from None


def load_recipe(path: str | Path, overrides: list[str] | None = None) -> Recipe:
    """Read, extend, override and validate a recipe file."""
    raw = apply_overrides(read_recipe_tree(Path(path)), overrides or [])
    return validate_recipe(raw, source=str(path))


def recipe_from_yaml(text: str, overrides: list[str] | None = None) -> Recipe:
    """Rebuild a recipe stored in a checkpoint (already resolved, no ``base:``)."""
    try:
        raw = safe_yaml.load(text) or {}
    except yaml.YAMLError:
        raise HsslUserError(
            "the checkpoint's stored recipe is damaged (not valid YAML); re-run pretrain"
        ) from None
    if not isinstance(raw, dict):
        raise HsslUserError(
            "the checkpoint's stored recipe is damaged (not a mapping); re-run pretrain"
        )
    return validate_recipe(apply_overrides(raw, overrides or []), source="checkpoint recipe")
