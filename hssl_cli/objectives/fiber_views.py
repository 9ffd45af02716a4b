"""Reading views from group fibers: fiber bundles ``G0`` and sampled element pairs."""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from hssl_cli.groups import Group
from hssl_cli.structured import BackboneOutput, fiber_bundle


class FiberViews(nn.Module):
    """Reads ``pool_{g0 in G0} fibers[:, :, g * g0]`` for per-sample elements ``g``.

    ``G0`` is the ``fiber_bundle_size`` elements nearest the identity; pair
    displacements ``g1^-1 g2`` come from the ``spread`` elements nearest the
    identity (all of ``G`` when unset). These are H-SSL's counterparts of crop
    size and augmentation strength (METHODS §2).
    """

    def __init__(
        self,
        group: Group,
        fiber_bundle_size: int,
        bundle_pool: Literal["mean", "max"],
        spread: int | None = None,
        distinct: bool = True,
    ) -> None:
        super().__init__()
        self.group = group
        self.bundle_pool = bundle_pool
        self.register_buffer(
            "multiplication", torch.tensor(group.multiplication_table), persistent=False
        )
        self.register_buffer(
            "bundle_offsets",
            torch.tensor(group.neighbourhood(fiber_bundle_size)),
            persistent=False,
        )
        displacements = group.neighbourhood(spread or group.order)
        if distinct and group.order > 1:
            displacements = displacements[1:]  # the identity comes first
        self.register_buffer("displacements", torch.tensor(displacements), persistent=False)

    def read(self, fibers: torch.Tensor, elements: torch.Tensor) -> torch.Tensor:
        """``[B, C, |G|]`` fibers and ``[B]`` element indices -> ``[B, C]`` view features."""
        return fiber_bundle(
            fibers, elements, self.bundle_offsets, self.multiplication, self.bundle_pool
        )

    def read_output(
        self, output: BackboneOutput, readout: Literal["fiber", "invariant"]
    ) -> torch.Tensor:
        """The feature an A-SSL objective projects: the identity fiber bundle, or invariant."""
        if readout == "invariant":
            return output.invariant
        return self.read_identity(output.fibers)

    def read_identity(self, fibers: torch.Tensor) -> torch.Tensor:
        identity = torch.zeros(fibers.shape[0], dtype=torch.long, device=fibers.device)
        return self.read(fibers, identity)

    def sample_pairs(self, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``g1`` uniform on ``G``; ``g2 = g1 d``, ``d`` uniform on the allowed displacements."""
        device = self.multiplication.device
        first = torch.randint(self.group.order, (batch,), device=device)
        choice = torch.randint(len(self.displacements), (batch,), device=device)
        second = self.multiplication[first, self.displacements[choice]]
        return first, second
