"""The scale group ``scaleN``: ``N`` scales ``q^0 .. q^(N-1)`` of a scale-equivariant network.

Element ``k`` shrinks an image about its centre by ``q^k`` (antialiased, zero-padded:
:mod:`hssl_cli.rescale`) and, on a fiber axis of ``N`` scales, shifts the axis by ``k``:
``f(T_k x)[s] ~ shrink_k(f(x)[s + k])`` (Sosnovik et al., ICLR 2020, arXiv:1910.11093).
A basis function at width ``sigma`` seen on an image shrunk by ``q`` is the function at
width ``q * sigma`` on the original, so scale ``s`` of the shrunk image reads scale ``s + k``.

Unlike a rotation axis the scale axis is not cyclic: a shift moves ``k`` fibers off the
top edge, and the ``k`` coarsest scales of ``f(T_k x)`` have no counterpart in ``f(x)``.
Our convention, used by H-SSL's views and by the equivariance measurements alike: only
fibers that exist on both sides are compared or paired (docs/methods.md, Scale group).
Continuous scale equivariance of sampled images is never exact: this is an approximate
symmetry, measured rather than assumed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from hssl_cli.errors import HsslUserError

if TYPE_CHECKING:
    import torch

SCALE_NAME = re.compile(r"^scale(\d+)$")
MIN_SCALES, MAX_SCALES = 2, 16
DEFAULT_SCALE_STEP = math.sqrt(2)


@dataclass(frozen=True)
class ScaleElement:
    """Shrink by ``step_size ** step`` (``step`` 0 is the identity)."""

    step: int
    step_size: float

    @property
    def factor(self) -> float:
        """The image's size after the action, relative to before (at most 1)."""
        return float(self.step_size ** (-self.step))

    def __str__(self) -> str:
        return f"x{self.factor:.3g}"


@dataclass(frozen=True)
class ScaleGroup:
    """``scales`` consecutive powers of ``step_size``: a window of the group of all ``q^k``.

    It is not closed under composition (the window has edges), so it offers no
    multiplication table and no fiber permutations; what needs them (cyclic fiber views,
    the invariant contrastive loss) refuses scale groups at recipe validation.
    """

    name: str
    scales: int
    step_size: float = DEFAULT_SCALE_STEP
    flips: bool = False  # the attributes rotation-specific checks read
    rotations: int = 1
    cyclic: bool = False

    @property
    def order(self) -> int:
        """The length of the fiber axis (``|G|`` in the layouts of hssl_cli.structured)."""
        return self.scales

    @property
    def is_trivial(self) -> bool:
        return False

    @property
    def gspace(self) -> Any:
        raise HsslUserError(
            f"escnn has no scale group, so {self.name} needs a scale-equivariant backbone; "
            "use model.backbone=sesn_cnn (or sesn_resnet18)"
        )

    @cached_property
    def elements(self) -> list[ScaleElement]:
        return [ScaleElement(step, self.step_size) for step in range(self.scales)]

    def neighbourhood(self, size: int) -> list[int]:
        """The identity and the next ``size - 1`` coarser scales: a one-sided bundle."""
        if not 1 <= size <= self.scales:
            raise HsslUserError(
                f"a neighbourhood of {size} scales does not fit group {self.name} "
                f"of {self.scales} scales; use 1..{self.scales}"
            )
        return list(range(size))

    def shared_scales(self, element: int) -> int:
        """How many fibers of ``f(T_k x)`` have a counterpart in ``f(x)``: ``N - k``."""
        return self.scales - element

    def act_on_fibers(self, features: torch.Tensor, element: int, axis: int = 2) -> torch.Tensor:
        """Shift the scale ``axis`` down by ``element``: out ``[s]`` = in ``[s + k]``; the
        ``k`` coarsest outputs, whose source is off the edge, are zero."""
        import torch

        kept = features.narrow(axis, element, self.scales - element)
        shape = list(features.shape)
        shape[axis] = element
        return torch.cat([kept, features.new_zeros(shape)], dim=axis)

    def act_on_images(self, images: torch.Tensor, element: int) -> torch.Tensor:
        """Shrink ``[B, C, H, W]`` images about the centre by ``q^element``."""
        from hssl_cli.rescale import rescale_images

        return rescale_images(images, self.elements[element].factor)

    def act_on_images_per_sample(
        self, images: torch.Tensor, elements: torch.Tensor
    ) -> torch.Tensor:
        """Shrink image ``b`` by ``q^elements[b]``, in one batched op."""
        from hssl_cli.rescale import rescale_images

        return rescale_images(images, self.step_size ** (-elements.float()))


def check_scale_group_name(name: str) -> bool:
    """Whether ``name`` is a ``scaleN`` name; ``ValueError`` when ``N`` is out of range."""
    match = SCALE_NAME.match(name)
    if not match:
        return False
    if not MIN_SCALES <= int(match.group(1)) <= MAX_SCALES:
        raise ValueError(f"group {name!r}: a scale group has {MIN_SCALES} to {MAX_SCALES} scales")
    return True


def scale_group(name: str, step_size: float = DEFAULT_SCALE_STEP) -> ScaleGroup:
    match = SCALE_NAME.match(name)
    assert match is not None
    return ScaleGroup(name, int(match.group(1)), step_size)
