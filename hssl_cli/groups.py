"""Symmetry groups of the image plane, as escnn sees them and as they act on pixels.

A group knows three faces of each element: the escnn element (for building
equivariant layers), its action on an image batch (exact for multiples of 90
degrees and for reflections, interpolated otherwise), and its action on a
regular-representation fiber axis (a permutation). H-SSL rests on those two
actions agreeing: ``f(T_g x) = rho(g) f(x)`` (Keller et al. 2023; docs/methods.md,
Structured features).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from hssl_cli.errors import HsslUserError
from hssl_cli.scale_group import (
    DEFAULT_SCALE_STEP,
    SCALE_NAME,
    ScaleGroup,
    check_scale_group_name,
    scale_group,
)

if TYPE_CHECKING:
    import torch

    from hssl_cli.config import ModelConfig

GROUP_NAME_HELP = (
    "trivial, flip, rotN (C_N, e.g. rot4), rotNflip (D_N, e.g. rot4flip) or scaleN "
    "(N scales, e.g. scale4)"
)
_ROT = re.compile(r"^rot(\d+)(flip)?$")
MAX_ROTATIONS = 64


@dataclass(frozen=True)
class GroupElement:
    """``flip`` then a counter-clockwise rotation by ``rotation`` steps of 360/N degrees."""

    flip: bool
    rotation: int
    rotations_in_group: int

    @property
    def degrees(self) -> float:
        return 360.0 * self.rotation / self.rotations_in_group

    def __str__(self) -> str:
        text = f"rot{self.degrees:g}"
        return f"flip.{text}" if self.flip else text


@dataclass(frozen=True)
class Group:
    """A finite subgroup of O(2): ``rotations`` rotation steps, with or without reflections."""

    name: str
    rotations: int
    flips: bool
    cyclic: bool = True  # every shift of the fiber axis stays on it (unlike ScaleGroup)

    # -------------------------------------------------------------- structure

    @property
    def order(self) -> int:
        return self.rotations * (2 if self.flips else 1)

    @property
    def is_trivial(self) -> bool:
        return self.order == 1

    @cached_property
    def gspace(self) -> Any:
        """The escnn gspace (imported lazily: escnn is slow to import)."""
        from escnn import gspaces

        if self.flips and self.rotations == 1:
            return gspaces.flip2dOnR2()
        if self.flips:
            return gspaces.flipRot2dOnR2(self.rotations)
        if self.rotations == 1:
            return gspaces.trivialOnR2()
        return gspaces.rot2dOnR2(self.rotations)

    @cached_property
    def elements(self) -> list[GroupElement]:
        """Elements in escnn's order, which is also the order of a regular fiber axis."""
        if self.is_trivial:
            return [GroupElement(False, 0, 1)]
        found = []
        for element in self.gspace.fibergroup.elements:
            value = element.to("radians")
            if self.flips and self.rotations == 1:
                flip, angle = bool(value), 0.0
            elif self.flips:
                flip, angle = bool(value[0]), float(value[1])
            else:
                flip, angle = False, float(value)
            step = round(angle / (2 * math.pi) * self.rotations) % self.rotations
            found.append(GroupElement(flip, step, self.rotations))
        return found

    @cached_property
    def _escnn_elements(self) -> list[Any]:
        return list(self.gspace.fibergroup.elements)

    @cached_property
    def multiplication_table(self) -> list[list[int]]:
        """``table[a][b]`` is the index of ``g_a g_b``."""
        if self.is_trivial:
            return [[0]]
        escnn = self._escnn_elements
        return [[escnn.index(a @ b) for b in escnn] for a in escnn]

    @cached_property
    def inverse_table(self) -> list[int]:
        if self.is_trivial:
            return [0]
        escnn = self._escnn_elements
        return [escnn.index(~a) for a in escnn]

    @cached_property
    def fiber_permutations(self) -> list[list[int]]:
        """``perm[g][i]`` = source index: ``(rho(g) v)[i] = v[perm[g][i]]`` on a regular fiber."""
        if self.is_trivial:
            return [[0]]
        import numpy as np

        group = self.gspace.fibergroup
        result = []
        for element in self._escnn_elements:
            matrix = np.asarray(group.regular_representation(element))
            # matrix[i, j] = 1 means basis j is sent to i, so output i reads input j.
            result.append([int(np.argmax(matrix[i])) for i in range(self.order)])
        return result

    def neighbourhood(self, size: int) -> list[int]:
        """The ``size`` elements closest to the identity (rotation distance, then flip).

        Used for fiber bundles ``G0`` and for the spread of sampled pairs (docs/methods.md,
        H-SSL).
        """
        if not 1 <= size <= self.order:
            raise HsslUserError(
                f"a neighbourhood of {size} elements does not fit group {self.name} "
                f"of order {self.order}; use 1..{self.order}"
            )

        def distance(i: int) -> tuple[int, int, int]:
            e = self.elements[i]
            steps = min(e.rotation, self.rotations - e.rotation)
            return (int(e.flip), steps, e.rotation)

        return sorted(range(self.order), key=distance)[:size]

    # -------------------------------------------------------------- actions

    def act_on_fibers(self, features: torch.Tensor, element: int, axis: int = 2) -> torch.Tensor:
        """``rho(g)`` on a tensor whose ``axis`` is a regular fiber axis of length ``|G|``."""
        import torch

        perm = torch.as_tensor(self.fiber_permutations[element], device=features.device)
        return features.index_select(axis, perm)

    def act_on_images(self, images: torch.Tensor, element: int) -> torch.Tensor:
        """``T_g`` on ``[B, C, H, W]``: flip along the width, then rotate counter-clockwise."""
        return rotate_images(self.elements[element], images)

    def act_on_images_per_sample(
        self, images: torch.Tensor, elements: torch.Tensor
    ) -> torch.Tensor:
        """Apply element ``elements[b]`` to image ``b`` (one batched op per distinct element)."""
        out = images.clone()
        for element in elements.unique().tolist():
            mask = elements == element
            out[mask] = self.act_on_images(images[mask], int(element))
        return out


def rotate_images(element: GroupElement, images: torch.Tensor) -> torch.Tensor:
    import torch

    if element.flip:
        images = torch.flip(images, dims=(3,))
    degrees = element.degrees
    if degrees % 90 == 0:
        return torch.rot90(images, int(degrees // 90) % 4, dims=(2, 3))
    return rotate_by_angle(images, math.radians(degrees))


def rotate_by_angle(images: torch.Tensor, radians: float) -> torch.Tensor:
    """Bilinear rotation about the image centre, counter-clockwise like ``torch.rot90``."""
    import torch
    import torch.nn.functional as F

    cos, sin = math.cos(radians), math.sin(radians)
    theta = torch.tensor(
        [[cos, -sin, 0.0], [sin, cos, 0.0]], dtype=images.dtype, device=images.device
    ).expand(images.shape[0], 2, 3)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def check_group_name(name: str) -> None:
    """Raise ``ValueError`` (for recipe validation) when ``name`` is no group we know."""
    if name in ("trivial", "flip") or check_scale_group_name(name):
        return
    match = _ROT.match(name)
    if not match or not 1 <= int(match.group(1)) <= MAX_ROTATIONS:
        raise ValueError(f"unknown group {name!r}; known: {GROUP_NAME_HELP}")


AnyGroup = Group | ScaleGroup
_GROUPS: dict[tuple[str, float], AnyGroup] = {}


def get_group(name: str, scale_step: float = DEFAULT_SCALE_STEP) -> AnyGroup:
    """The group called ``name`` (cached: escnn structures are costly to build).

    ``scale_step`` is a scale group's ``q`` (``model.scale_step``); other groups ignore it.
    """
    try:
        check_group_name(name)
    except ValueError as err:
        raise HsslUserError(str(err)) from None
    key = (name, scale_step if SCALE_NAME.match(name) else 0.0)
    if key not in _GROUPS:
        group: AnyGroup
        if SCALE_NAME.match(name):
            group = scale_group(name, scale_step)
        elif name == "trivial":
            group = Group(name, 1, False)
        elif name == "flip":
            group = Group(name, 1, True)
        else:
            match = _ROT.match(name)
            assert match is not None
            group = Group(name, int(match.group(1)), bool(match.group(2)))
        _GROUPS[key] = group
    return _GROUPS[key]


def model_group(config: ModelConfig) -> AnyGroup:
    """The group of a recipe's model, with its scale step."""
    return get_group(config.group, config.scale_step)
