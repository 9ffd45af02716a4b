"""Where H-SSL reads its views: group fibers or spatial windows, behind one interface.

A :class:`ViewSource` turns a backbone output into *positions* ``[B, C, P]`` (``P``
places a view can be read from), samples pairs of positions, and reads a view's
feature ``[B, C]`` at per-sample positions. :class:`FiberViews` reads from the ``|G|``
fibers of an equivariant map (Keller et al. 2023, sec. 3.2); :class:`SpatialViews` from
the spatial positions of a plain CNN's map (the translation group, sec. 4).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hssl_cli.distributed import global_count, local_rows
from hssl_cli.errors import HsslUserError
from hssl_cli.groups import Group
from hssl_cli.structured import BackboneOutput, fiber_bundle, pool_group


class ViewSource(nn.Module):
    def positions(self, output: BackboneOutput) -> torch.Tensor:
        """What views are read from, with its position axis last: ``[B, C, P]`` or more."""
        raise NotImplementedError

    def sample_pairs(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-sample positions ``(p1, p2)``, each ``[B]``, of the two views of each image.

        Drawn for the global batch, this rank keeping its rows (see hssl_cli.distributed).
        """
        raise NotImplementedError

    def read(self, positions: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """``[B, C]`` view features at per-sample positions ``chosen`` ``[B]``."""
        raise NotImplementedError

    def count(self, positions: torch.Tensor) -> int:
        """How many positions a sample has (``P``)."""
        raise NotImplementedError

    def every_view(self, positions: torch.Tensor) -> torch.Tensor:
        """Every position of every sample as a view, position-major: ``[P * B, C]``."""
        count, batch = self.count(positions), positions.shape[0]
        chosen = torch.arange(count, device=positions.device).repeat_interleave(batch)
        return self.read(positions.repeat(count, *([1] * (positions.dim() - 1))), chosen)


class GroupFiberViews(ViewSource):
    """Views from the fibers of a group axis, whose position 0 is the identity element."""

    def positions(self, output: BackboneOutput) -> torch.Tensor:
        return output.fibers

    def read_output(
        self, output: BackboneOutput, readout: Literal["fiber", "invariant"]
    ) -> torch.Tensor:
        """The feature an A-SSL objective projects: the identity fiber bundle, or invariant."""
        if readout == "invariant":
            return output.invariant
        identity = torch.zeros(len(output.fibers), dtype=torch.long, device=output.fibers.device)
        return self.read(output.fibers, identity)


class FiberViews(GroupFiberViews):
    """Reads ``pool_{g0 in G0} fibers[:, :, g * g0]`` for per-sample elements ``g``.

    ``G0`` is the ``fiber_bundle_size`` elements nearest the identity; pair
    displacements ``g1^-1 g2`` come from the ``spread`` elements nearest the
    identity (all of ``G`` when unset). These are H-SSL's counterparts of crop
    size and augmentation strength.
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

    def count(self, positions: torch.Tensor) -> int:
        return self.group.order

    def read(self, positions: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """``[B, C, |G|]`` fibers and ``[B]`` element indices -> ``[B, C]`` view features."""
        return fiber_bundle(
            positions, chosen, self.bundle_offsets, self.multiplication, self.bundle_pool
        )

    def sample_pairs(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``g1`` uniform on ``G``; ``g2 = g1 d``, ``d`` uniform on the allowed displacements."""
        batch, device = global_count(positions.shape[0]), self.multiplication.device
        first = torch.randint(self.group.order, (batch,), device=device)
        choice = torch.randint(len(self.displacements), (batch,), device=device)
        second = self.multiplication[first, self.displacements[choice]]
        return local_rows(first), local_rows(second)


class SpatialViews(ViewSource):
    """Views from spatial fibers: H-SSL for the translation group.

    An ordinary CNN is translation-equivariant, so its un-pooled map's spatial positions
    are the fibers. A view is a ``window x window`` bundle of positions (the translation
    ``G0``), pooled; the two views of an image sit at offsets at most ``spread`` apart in
    each axis (the translation counterpart of augmentation strength). A map with a group
    axis is group-pooled first.
    """

    def __init__(
        self,
        window: int,
        pool: Literal["mean", "max"],
        spread: int | None = None,
        distinct: bool = True,
    ) -> None:
        super().__init__()
        self.window = window
        self.pool = pool
        self.spread = spread
        self.distinct = distinct

    def positions(self, output: BackboneOutput) -> torch.Tensor:
        """Every window pooled: ``[B, C, H - window + 1, W - window + 1]``."""
        feature_map = pool_group(output.feature_map, self.pool)
        height, width = feature_map.shape[-2:]
        if self.window > min(height, width):
            raise HsslUserError(
                f"method.fiber_bundle_size={self.window} exceeds the {height}x{width} feature map; "
                "use a smaller window for translation fibers"
            )
        if self.pool == "max":
            return F.max_pool2d(feature_map, self.window, stride=1)
        return F.avg_pool2d(feature_map, self.window, stride=1)

    def count(self, positions: torch.Tensor) -> int:
        return positions.shape[-2] * positions.shape[-1]

    def sample_pairs(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat window indices ``(p1, p2)``: ``p1`` uniform, ``p2 = p1 + d`` clamped to the map."""
        batch, device = global_count(positions.shape[0]), positions.device
        rows, cols = positions.shape[-2:]
        reach = max(rows, cols) - 1 if self.spread is None else self.spread
        offsets = [
            (dy, dx)
            for dy in range(-reach, reach + 1)
            for dx in range(-reach, reach + 1)
            if not (self.distinct and dy == 0 and dx == 0)
        ]
        if not offsets:
            raise HsslUserError(
                "method.spread=0 with distinct pairs leaves no offset; use spread >= 1"
            )
        table = torch.tensor(offsets, device=device)
        row = torch.randint(rows, (batch,), device=device)
        col = torch.randint(cols, (batch,), device=device)
        shift = table[torch.randint(len(offsets), (batch,), device=device)]
        row2 = (row + shift[:, 0]).clamp(0, rows - 1)
        col2 = (col + shift[:, 1]).clamp(0, cols - 1)
        return local_rows(row * cols + col), local_rows(row2 * cols + col2)

    def read(self, positions: torch.Tensor, chosen: torch.Tensor) -> torch.Tensor:
        """``[B, C, H', W']`` pooled windows and ``[B]`` flat positions -> ``[B, C]``."""
        flat = positions.flatten(2)
        return flat.gather(2, chosen.view(-1, 1, 1).expand(-1, flat.shape[1], 1)).squeeze(2)
