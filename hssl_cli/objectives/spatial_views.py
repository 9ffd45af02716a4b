"""Reading views from spatial fibers: H-SSL for the translation group (METHODS §2, §0).

An ordinary CNN is translation-equivariant, so its un-pooled map's spatial positions
are the fibers. A view is a ``window x window`` bundle of positions (the translation
``G0``), pooled; the two views of an image sit at offsets at most ``spread`` apart in
each axis (the translation counterpart of augmentation strength).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from hssl_cli.errors import HsslUserError


class SpatialViews(nn.Module):
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

    def windows(self, feature_map: torch.Tensor) -> torch.Tensor:
        """``[B, C, H, W]`` -> every window pooled: ``[B, C, H - window + 1, W - window + 1]``."""
        height, width = feature_map.shape[-2:]
        if self.window > min(height, width):
            raise HsslUserError(
                f"method.fiber_bundle_size={self.window} exceeds the {height}x{width} feature map; "
                "use a smaller window for translation fibers"
            )
        if self.pool == "max":
            return F.max_pool2d(feature_map, self.window, stride=1)
        return F.avg_pool2d(feature_map, self.window, stride=1)

    def sample_pairs(
        self, batch: int, rows: int, cols: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Flat window indices ``(p1, p2)``: ``p1`` uniform, ``p2 = p1 + d`` clamped to the map."""
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
        return row * cols + col, row2 * cols + col2

    @staticmethod
    def read(windows: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
        """``[B, C, H', W']`` pooled windows and ``[B]`` flat positions -> ``[B, C]``."""
        flat = windows.flatten(2)
        return flat.gather(2, positions.view(-1, 1, 1).expand(-1, flat.shape[1], 1)).squeeze(2)
