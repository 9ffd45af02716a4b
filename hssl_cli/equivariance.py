"""How equivariant is a model really? Layer-by-layer, element-by-element measurements.

For an element ``g`` and a layer ``f_l`` with regular fields, the relative error is
``||f_l(T_g x) - rho(g) f_l(x)|| / ||f_l(x)||`` (docs/methods.md, Evaluation), where
``rho(g)`` moves the spatial grid and permutes each fiber. Invariant (pooled) features are
checked against ``f(x)`` itself; for the structured output we also search which fiber
permutation best explains ``f(T_g x)``: the one H-SSL relies on being ``rho(g)``.
A continuous sweep measures invariance under rotations the pixel grid cannot
represent exactly, next to the same architecture with the trivial group.

Everything runs in eval mode under ``torch.inference_mode`` (autocast in ``precision``
when it is not fp32) and restores the model's mode. Errors are computed in fp32; below
fp32 rounding alone moves the outputs, so "exact" means below that precision's
:data:`EXACT_THRESHOLDS` entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch

from hssl_cli.errors import HsslUserError, clip
from hssl_cli.groups import Group, GroupElement, rotate_by_angle, rotate_images
from hssl_cli.models.backbone import Backbone
from hssl_cli.runtime import autocast_dtype, evaluating, inference
from hssl_cli.structured import split_fields

EXACT_THRESHOLD = 1e-5  # fp32
# Relative errors that rounding alone explains, per precision of the forward passes (fp16
# keeps 11 significant bits, bf16 8): an exactly equivariant model stays below them.
EXACT_THRESHOLDS = {"fp32": EXACT_THRESHOLD, "fp16": 2e-3, "bf16": 1e-2}
VERDICT_EXACT = "exactly equivariant to float precision"
VERDICT_APPROXIMATE = "approximately equivariant (exact on the pixel grid, interpolation elsewhere)"
VERDICT_APPROXIMATE_SCALE = (
    "approximately equivariant (rescaling a sampled image is never exact: see the README)"
)
VERDICT_NOT = "not equivariant"


def relative_error(actual: torch.Tensor, expected: torch.Tensor, reference: torch.Tensor) -> float:
    """``||actual - expected|| / ||reference||``, in fp32 whatever the inputs' dtype."""
    actual, expected, reference = actual.float(), expected.float(), reference.float()
    return float((actual - expected).norm() / reference.norm().clamp_min(1e-12))


def is_grid_exact(element: GroupElement) -> bool:
    """Multiples of 90 degrees and reflections map the pixel grid onto itself."""
    return element.degrees % 90 == 0


@dataclass
class Report:
    model_group: str
    group: str
    elements: list[str]
    grid_exact: list[bool]
    layers: list[dict[str, Any]] = field(default_factory=list)
    invariant_err: dict[str, float] = field(default_factory=dict)
    structured: dict[str, dict[str, Any]] = field(default_factory=dict)
    sweep: dict[str, list[float]] = field(default_factory=dict)
    precision: str = "fp32"  # of the forward passes
    # Set for groups nothing on the pixel grid represents exactly (scales): the largest
    # per-layer error still called approximately equivariant (hssl_cli.scale_equivariance).
    tolerance: float | None = None

    @property
    def exact_threshold(self) -> float:
        return EXACT_THRESHOLDS[self.precision]

    @property
    def worst_grid_exact_err(self) -> float:
        values = [
            err
            for layer in self.layers
            for name, err in layer["rel_err"].items()
            if err is not None and self.grid_exact[self.elements.index(name)]
        ]
        values += [
            v
            for name, v in self.invariant_err.items()
            if self.grid_exact[self.elements.index(name)]
        ]
        return max(values, default=0.0)

    @property
    def worst_err(self) -> float:
        values = [e for layer in self.layers for e in layer["rel_err"].values() if e is not None]
        return max([*values, *self.invariant_err.values()], default=0.0)

    @property
    def worst_layer_err(self) -> float:
        values = [e for layer in self.layers for e in layer["rel_err"].values() if e is not None]
        return max(values, default=0.0)

    @property
    def verdict(self) -> str:
        if self.tolerance is not None:
            expected = all(
                s.get("best_shift") == s.get("expected_shift") for s in self.structured.values()
            )
            within = self.worst_layer_err <= self.tolerance
            return VERDICT_APPROXIMATE_SCALE if expected and within else VERDICT_NOT
        if self.worst_grid_exact_err > self.exact_threshold:
            return VERDICT_NOT
        if self.worst_err > self.exact_threshold:
            return VERDICT_APPROXIMATE
        return VERDICT_EXACT

    def to_dict(self) -> dict[str, Any]:
        return {
            "model_group": self.model_group,
            "group": self.group,
            "elements": self.elements,
            "grid_exact": dict(zip(self.elements, self.grid_exact, strict=True)),
            "verdict": self.verdict,
            "precision": self.precision,
            "exact_threshold": self.exact_threshold,
            "worst_grid_exact_err": self.worst_grid_exact_err,
            "layers": self.layers,
            "invariant_err": self.invariant_err,
            "structured": self.structured,
            "sweep": {
                key: [None if isinstance(v, float) and math.isnan(v) else v for v in values]
                for key, values in self.sweep.items()
            },
            **({} if self.tolerance is None else {"tolerance": self.tolerance}),
        }


def check_compatible(model_group: Group, group: Group) -> None:
    """The model's fibers must at least carry the kind of transformation asked about."""
    if group.is_trivial:
        return
    if model_group.is_trivial:
        raise HsslUserError(
            f"the model has no group axis (group trivial), so it has no {group.name} "
            "representation to check; inspect a model with a group, or pass --group trivial"
        )
    if group.flips and not model_group.flips:
        raise HsslUserError(
            f"the model's group {model_group.name} has no reflections, so {group.name} "
            f"cannot be checked on it; use --group rot{group.rotations} or a rotNflip model"
        )


def _model_index(model_group: Group, element: GroupElement) -> int | None:
    for index, candidate in enumerate(model_group.elements):
        if candidate.flip == element.flip and math.isclose(
            candidate.degrees % 360, element.degrees % 360
        ):
            return index
    return None


def _rho(model_group: Group, flat_map: torch.Tensor, index: int) -> torch.Tensor:
    """``rho(g)`` on a flat regular map: permute every fiber, then move the grid."""
    fields = split_fields(flat_map, model_group.order)
    permuted = model_group.act_on_fibers(fields, index).flatten(1, 2)
    return model_group.act_on_images(permuted, index)


def measure(
    backbone: Backbone,
    images: torch.Tensor,
    group: Group,
    angles: list[float],
    baseline: Backbone | None = None,
    precision: str = "fp32",
) -> Report:
    """All measurements for ``images`` (``[N, C, H, W]`` in ``[0, 1]``) under ``group``,
    with the forward passes in ``precision`` (fp32, bf16 or fp16) on the images' device."""
    model_group = backbone.group
    check_compatible(model_group, group)
    autocast_dtype(precision)  # an unknown name fails before any work
    with evaluating(backbone, baseline):  # outside inference: escnn caches filters on eval()
        with inference(images.device, precision):
            report = _measure(backbone, images, group)
        report.precision = precision
        if angles:
            report.sweep = rotation_sweep(backbone, images, angles, baseline, precision)
        return report


def _measure(backbone: Backbone, images: torch.Tensor, group: Group) -> Report:
    """:func:`measure`'s per-layer, pooled and structured errors (eval mode, no autograd)."""
    model_group = backbone.group
    names = [str(e) for e in group.elements]
    report = Report(model_group.name, group.name, names, [is_grid_exact(e) for e in group.elements])
    exact_inputs = (images, backbone.stage_outputs(images), backbone(images))
    # Off-grid rotations lose the corners: compare those on the inscribed disc only.
    masked = disc_mask(images)
    disc_inputs = (masked, backbone.stage_outputs(masked), backbone(masked))
    per_layer: dict[str, dict[str, float | None]] = {n: {} for n, _ in exact_inputs[1]}
    for element, name in zip(group.elements, names, strict=True):
        grid_exact = is_grid_exact(element)
        inputs, reference_stages, reference = exact_inputs if grid_exact else disc_inputs
        keep = (lambda t: t) if grid_exact else disc_mask
        moved_images = rotate_images(element, inputs)
        model_index = _model_index(model_group, element)
        moved_stages = backbone.stage_outputs(moved_images)
        for (layer, ref), (_, moved) in zip(reference_stages, moved_stages, strict=True):
            per_layer[layer][name] = (
                None
                if model_index is None
                else relative_error(
                    keep(moved), keep(_rho(model_group, ref, model_index)), keep(ref)
                )
            )
        moved_out = backbone(moved_images)
        report.invariant_err[name] = relative_error(
            moved_out.invariant, reference.invariant, reference.invariant
        )
        report.structured[name] = _best_shift(model_group, reference.fibers, moved_out.fibers)
        report.structured[name]["expected_shift_err"] = (
            None
            if model_index is None
            else relative_error(
                moved_out.fibers,
                model_group.act_on_fibers(reference.fibers, model_index),
                reference.fibers,
            )
        )
    for layer, output in exact_inputs[1]:
        shape = output.shape
        report.layers.append(
            {
                "name": layer,
                "fields": int(shape[1] // model_group.order),
                "size": [int(shape[2]), int(shape[3])],
                "rel_err": per_layer[layer],
            }
        )
    return report


def _best_shift(model_group: Group, reference: torch.Tensor, moved: torch.Tensor) -> dict[str, Any]:
    """Which ``rho(h)``, ``h`` in the model's group, best maps ``f(x)`` fibers onto ``f(T_g x)``."""
    errors = [
        relative_error(moved, model_group.act_on_fibers(reference, h), reference)
        for h in range(model_group.order)
    ]
    best = min(range(len(errors)), key=errors.__getitem__)
    return {"best_shift": str(model_group.elements[best]), "best_shift_err": errors[best]}


def disc_mask(images: torch.Tensor) -> torch.Tensor:
    """Zero the corners, so rotating by any angle keeps the image content."""
    height, width = images.shape[-2:]
    ys = torch.linspace(-1, 1, height, device=images.device).view(-1, 1)
    xs = torch.linspace(-1, 1, width, device=images.device).view(1, -1)
    return images * ((ys**2 + xs**2) <= 1.0).to(images.dtype)


def rotation_sweep(
    backbone: Backbone,
    images: torch.Tensor,
    angles: list[float],
    baseline: Backbone | None,
    precision: str = "fp32",
) -> dict[str, list[float]]:
    """Invariance error of pooled features versus rotation angle (inputs masked to a disc)."""
    masked = disc_mask(images)
    result: dict[str, list[float]] = {"angles": list(angles)}
    models = {"model_invariant_err": backbone}
    if baseline is not None:
        models["trivial_group_invariant_err"] = baseline
    for key, model in models.items():
        with evaluating(model), inference(images.device, precision):
            reference = model(masked).invariant
            result[key] = [
                relative_error(model(_rotate(masked, angle)).invariant, reference, reference)
                for angle in angles
            ]
    return result


def _rotate(images: torch.Tensor, degrees: float) -> torch.Tensor:
    if degrees % 90 == 0:
        return torch.rot90(images, int(degrees // 90) % 4, dims=(2, 3))
    return rotate_by_angle(images, math.radians(degrees))


MAX_SWEEP_ANGLES = 3600


def parse_angles(text: str) -> list[float]:
    """``START:STOP:STEP`` in degrees (STOP excluded) -> list of angles."""
    return parse_sweep(text, "--angles", "angles", "in degrees", "0:360:15")


def parse_factors(text: str) -> list[float]:
    """``START:STOP:STEP`` rescaling factors (STOP included when a step lands on it)."""
    return parse_sweep(text, "--factors", "factors", "of rescaling factors", "0.5:1.0:0.05", True)


def parse_sweep(
    text: str, option: str, things: str, unit: str, example: str, inclusive: bool = False
) -> list[float]:
    shown = clip(repr(text), 60)
    try:
        start, stop, step = (float(part) for part in text.split(":"))
    except ValueError:
        raise HsslUserError(
            f"{option} {shown} is not START:STOP:STEP {unit} (e.g. {example})"
        ) from None
    if not all(math.isfinite(value) for value in (start, stop, step)):
        raise HsslUserError(f"{option} {shown}: START, STOP and STEP must be finite numbers")
    if step <= 0 or stop <= start:
        raise HsslUserError(f"{option} {shown}: need STOP > START and STEP > 0 (e.g. {example})")
    steps = (stop - start) / step  # inf when it overflows
    count = math.ceil(steps - 1e-9) if math.isfinite(steps) else None
    if (
        count is not None
        and inclusive
        and abs(start + count * step - stop) <= 1e-9 * max(1.0, abs(stop))
    ):
        count += 1
    if count is None or count > MAX_SWEEP_ANGLES:
        asked = f"more {things} than a float counts" if count is None else f"{count} {things}"
        raise HsslUserError(
            f"{option} {shown} asks for {asked} (at most {MAX_SWEEP_ANGLES}); use a larger STEP"
        )
    return [round(start + i * step, 6) for i in range(count)]
