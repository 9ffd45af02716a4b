"""BYOL's regression loss (Grill et al., NeurIPS 2020, eq. 2).

Example::

    prediction, target = torch.randn(256, 256), torch.randn(256, 256)
    loss = byol_loss(prediction, target)  # 2 - 2 cos, averaged over the batch
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hssl_cli.losses.precision import at_least_fp32


def byol_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``mean_i (2 - 2 cos(p_i, z_i))`` for one ordered pair of views; ``target`` gets no gradient.

    Equal to the mean squared distance of the L2-normalised vectors. A per-sample mean: with
    several training processes, DDP's gradient average makes it the global batch's.
    """
    cosine = F.cosine_similarity(at_least_fp32(prediction), at_least_fp32(target.detach()), dim=-1)
    return (2 - 2 * cosine).mean()


def symmetric_byol_loss(
    predictions: tuple[torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """Each view's prediction regressed on the other view's target, summed (in ``[0, 8]``)."""
    return byol_loss(predictions[0], targets[1]) + byol_loss(predictions[1], targets[0])
