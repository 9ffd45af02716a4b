"""Prepare an equivariance inspection: the model (checkpoint or recipe), inputs and baseline."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch

from hssl_cli.config import Recipe
from hssl_cli.data.image_set import ImageSet
from hssl_cli.equivariance import Report, measure
from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.models.backbone import Backbone
from hssl_cli.runtime import check_precision, inference_precision, to_device

MAX_SAMPLES = 4096


@dataclass
class Inspection:
    source: str
    samples: int
    report: Report


def _model_from(
    checkpoint: Path | None, recipe_path: Path | Recipe | None, overrides: list[str]
) -> tuple[str, Recipe, Backbone | None, list[int] | None]:
    if (checkpoint is None) == (recipe_path is None):
        raise HsslUserError("give a CHECKPOINT or --recipe PATH (exactly one of them)")
    if checkpoint is not None:
        from hssl_cli.checkpoint import load_backbone, read_checkpoint

        loaded = read_checkpoint(checkpoint, overrides)
        return (
            str(checkpoint),
            loaded.recipe,
            load_backbone(loaded, str(checkpoint)),
            loaded.input_shape,
        )
    from hssl_cli.recipe import load_recipe, recipe_from_yaml

    if isinstance(recipe_path, Recipe):
        recipe = recipe_from_yaml(recipe_path.to_yaml(), overrides)
        return "recipe (random init)", recipe, None, None
    assert recipe_path is not None
    return f"{recipe_path} (random init)", load_recipe(recipe_path, overrides), None, None


def _inputs(
    recipe: Recipe, data: Literal["recipe", "noise"], samples: int, shape: list[int] | None
) -> tuple[torch.Tensor, ImageSet | None]:
    """Test-split images (or uniform noise of the model's input shape) in ``[0, 1]``."""
    from hssl_cli.data import image_shape, load_images

    if data == "recipe":
        loaded = load_images(recipe.data, "test")
        return loaded.images[:samples].float() / 255, loaded
    known = shape or image_shape(recipe.data)
    if known is None:  # only the files know the shape
        known = list(load_images(recipe.data, "test").images.shape[1:])
    generator = torch.Generator().manual_seed(recipe.seed)
    return torch.rand(samples, *known, generator=generator), None


def _unstructured_twin(recipe: Recipe, model: Backbone) -> Backbone:
    """The scale model's control: the same recipe with ``model.structure: unstructured``."""
    from hssl_cli.models import build_backbone

    config = recipe.model.model_copy(update={"structure": "unstructured"})
    torch.manual_seed(recipe.seed)
    twin = build_backbone(config, model.in_channels)
    twin.input_mean.copy_(model.input_mean)
    twin.input_std.copy_(model.input_std)
    return twin


def _check_scale_group(model: Backbone, group_name: str | None) -> None:
    """A scale model is measured on its own scale group, a rotation model never on one."""
    from hssl_cli.scale_group import ScaleGroup

    is_scale = isinstance(model.group, ScaleGroup)
    if group_name is None or group_name == model.group.name:
        return
    asked_scale = isinstance(get_group(group_name), ScaleGroup)
    if is_scale or asked_scale:
        raise HsslUserError(
            f"--group {group_name}: a {model.group.name} model is measured on its own group; "
            "drop --group"
        )


def _trivial_baseline(recipe: Recipe, model: Backbone) -> Backbone:
    """The same architecture with the trivial group: widths x |G| plain channels, random init."""
    from hssl_cli.models import build_backbone

    order = model.group.order
    config = recipe.model.model_copy(
        update={"group": "trivial", "widths": [w * order for w in recipe.model.widths]}
    )
    torch.manual_seed(recipe.seed)
    baseline = build_backbone(config, model.in_channels)
    baseline.input_mean.copy_(model.input_mean)
    baseline.input_std.copy_(model.input_std)
    return baseline


def inspect_model(
    checkpoint: Path | None,
    recipe_path: Path | Recipe | None,
    overrides: list[str],
    group_name: str | None,
    data: Literal["recipe", "noise"],
    samples: int,
    angles: list[float],
    device: torch.device,
    precision: str = "auto",
    factors: list[float] | None = None,
) -> Inspection:
    """Measure a checkpoint's (or a recipe's random-init) model on ``device``; the recipe is
    a file or a loaded :class:`Recipe`. ``precision`` is ``--precision``
    (:func:`hssl_cli.runtime.inference_precision`). A scale-group model is measured by
    :func:`hssl_cli.scale_equivariance.measure_scale`, its sweep over ``factors`` (None: the
    group's range, empty: no sweep) instead of ``angles``."""
    from hssl_cli.data import channel_stats
    from hssl_cli.models import build_backbone

    if not 1 <= samples <= MAX_SAMPLES:
        raise HsslUserError(
            f"--samples {samples}: give 1 to {MAX_SAMPLES} images (all go through the model "
            "at once; a relative error settles long before the limit)"
        )
    if group_name is not None:
        get_group(group_name)  # a typo refused before the model is built
    source, recipe, backbone, shape = _model_from(checkpoint, recipe_path, overrides)
    chosen = inference_precision(precision, recipe.train.precision, device)
    check_precision(device, chosen, "--precision")
    images, loaded = _inputs(recipe, data, samples, shape)
    if backbone is None:
        torch.manual_seed(recipe.seed)
        backbone = build_backbone(recipe.model, images.shape[1])
        if loaded is not None:
            backbone.set_normalization(*channel_stats(loaded))
    from hssl_cli.scale_group import ScaleGroup

    _check_scale_group(backbone, group_name)
    if isinstance(backbone.group, ScaleGroup):
        from hssl_cli.scale_equivariance import default_factors, measure_scale

        sweep = default_factors(backbone.group) if factors is None else factors
        has_twin = sweep and recipe.model.structure == "equivariant"
        twin = _unstructured_twin(recipe, backbone) if has_twin else None
        backbone.to(device)
        if twin is not None:
            twin.to(device)
        scale_report = measure_scale(backbone, to_device(images, device), sweep, twin, chosen)
        return Inspection(source, len(images), scale_report)
    group = get_group(group_name or recipe.model.group)
    baseline = _trivial_baseline(recipe, backbone) if angles else None
    backbone.to(device)
    if baseline is not None:
        baseline.to(device)
    report = measure(backbone, to_device(images, device), group, angles, baseline, chosen)
    return Inspection(source, len(images), report)


def inspection_title(report: dict[str, Any]) -> str:
    """One line naming what an inspection report measured (its table's and plot's title)."""
    title = (
        f"{report['source']}: {report['group']} on a {report['model_group']} model, "
        f"{report['samples']} {report['data']} images"
    )
    if report["precision"] != "fp32":
        title += f", {report['precision']} (exact below {report['exact_threshold']:g})"
    return title
