"""H-SSL views from the non-cyclic fiber axis of a scale group.

A view at scale ``s`` pools the bundle of fibers ``s .. s + |G0| - 1`` (the identity and
the next coarser scales: ``fiber_bundle_size``). A rotation axis wraps around, so any
element can start a bundle; a scale axis has edges, so a bundle may only start where it
fits: ``s <= S - |G0|``. Pairs ``(s1, s2)`` are drawn uniformly from the pairs whose
bundles both exist and whose distance ``|s1 - s2|`` is below ``spread`` (all of them when
unset), and differ when sampling is ``distinct``: views only from elements for which both
fibers exist (docs/methods.md, Scale group).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch

from hssl_cli.distributed import global_count, local_rows
from hssl_cli.errors import HsslUserError
from hssl_cli.objectives.fiber_views import GroupFiberViews
from hssl_cli.structured import pool_group

if TYPE_CHECKING:
    from hssl_cli.scale_group import ScaleGroup


def valid_scale_pairs(
    scales: int, bundle_size: int, spread: int | None, distinct: bool
) -> list[tuple[int, int]]:
    """Every ``(s1, s2)`` whose bundles fit on ``scales`` fibers, within ``spread``."""
    starts = range(scales - bundle_size + 1)
    reach = len(starts) if spread is None else spread
    return [
        (first, second)
        for first in starts
        for second in starts
        if abs(first - second) < reach and not (distinct and first == second)
    ]


class ScaleFiberViews(GroupFiberViews):
    def __init__(
        self,
        group: ScaleGroup,
        fiber_bundle_size: int,
        bundle_pool: Literal["mean", "max"],
        spread: int | None = None,
        distinct: bool = True,
    ) -> None:
        super().__init__()
        self.group = group
        self.bundle_size = fiber_bundle_size
        self.bundle_pool = bundle_pool
        pairs = valid_scale_pairs(group.scales, fiber_bundle_size, spread, distinct)
        if not pairs:
            raise HsslUserError(
                f"no two views fit: {group.scales} scales hold bundles of "
                f"{fiber_bundle_size} at {group.scales - fiber_bundle_size + 1} places "
                f"(spread {spread}); use a smaller method.fiber_bundle_size or a larger spread"
            )
        self.register_buffer("pairs", torch.tensor(pairs), persistent=False)
        offsets = torch.tensor(group.neighbourhood(fiber_bundle_size))  # 0 .. |G0| - 1
        self.register_buffer("bundle_offsets", offsets, persistent=False)

    def count(self, positions: torch.Tensor) -> int:
        """Places a bundle can start: ``S - |G0| + 1``."""
        return self.group.scales - self.bundle_size + 1

    def read(self, positions: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """``[B, C, S]`` fibers and ``[B]`` bundle starts -> ``[B, C]`` pooled bundles."""
        indices = chosen.view(-1, 1) + self.bundle_offsets.view(1, -1)  # [B, |G0|]
        gathered = positions.gather(2, indices.unsqueeze(1).expand(-1, positions.shape[1], -1))
        return pool_group(gathered, self.bundle_pool)

    def sample_pairs(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = global_count(positions.shape[0])
        chosen = self.pairs[torch.randint(len(self.pairs), (batch,), device=self.pairs.device)]
        return local_rows(chosen[:, 0]), local_rows(chosen[:, 1])
