"""VICReg's loss (Bardes, Ponce & LeCun, ICLR 2022, eq. 6): variance, invariance, covariance.

No negatives: two views' embeddings are pulled together (invariance, a mean squared
error), while each embedding dimension is kept spread over the batch (variance, a hinge
on its standard deviation at 1) and the dimensions decorrelated (covariance, the squared
off-diagonal covariances). The variance and covariance terms prevent collapse.

Example::

    z_a, z_b = torch.randn(256, 2048), torch.randn(256, 2048)
    terms = vicreg_loss(z_a, z_b)
    terms["loss"].backward()
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hssl_cli.distributed import gather_rows
from hssl_cli.losses.precision import at_least_fp32


def variance_hinge(embeddings: torch.Tensor, eps: float) -> torch.Tensor:
    """``mean_j max(0, 1 - sqrt(Var(z^j) + eps))``, the unbiased variance over the batch."""
    std = torch.sqrt(embeddings.var(dim=0) + eps)
    return F.relu(1 - std).mean()


def covariance_penalty(embeddings: torch.Tensor) -> torch.Tensor:
    """``sum_{i != j} Cov(z)_{ij}^2 / d`` with the unbiased covariance over the batch."""
    batch, dim = embeddings.shape
    centered = embeddings - embeddings.mean(dim=0)
    covariance = centered.T @ centered / (batch - 1)
    off_diagonal = covariance - torch.diag(torch.diagonal(covariance))
    return off_diagonal.pow(2).sum() / dim


def vicreg_loss(
    z_a: torch.Tensor,
    z_b: torch.Tensor,
    invariance_weight: float = 25.0,
    variance_weight: float = 25.0,
    covariance_weight: float = 1.0,
    eps: float = 1e-4,
) -> dict[str, torch.Tensor]:
    """VICReg's loss for paired embeddings ``[N, D]`` (row ``i`` of both is one sample).

    ``loss = lambda s(Z_a, Z_b) + mu [v(Z_a) + v(Z_b)] + nu [c(Z_a) + c(Z_b)]``, as in the
    paper and solo-learn: ``s`` the mean squared error, ``v`` the variance hinge, ``c`` the
    covariance penalty. The returned ``invariance``, ``variance`` and ``covariance`` are
    the unweighted terms (``v`` and ``c`` summed over both branches). Defaults are the
    paper's ``lambda = mu = 25``, ``nu = 1``, ``eps = 1e-4``. With several training
    processes every rank's rows are gathered first: the loss is the global batch's.
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"vicreg_loss needs two [N, D] tensors of one shape, got {z_a.shape}")
    z_a, z_b = gather_rows(at_least_fp32(z_a)), gather_rows(at_least_fp32(z_b))
    if z_a.shape[0] < 2:
        raise ValueError("vicreg_loss needs at least two samples to estimate variances")
    invariance = F.mse_loss(z_a, z_b)
    variance = variance_hinge(z_a, eps) + variance_hinge(z_b, eps)
    covariance = covariance_penalty(z_a) + covariance_penalty(z_b)
    loss = invariance_weight * invariance + variance_weight * variance
    loss = loss + covariance_weight * covariance
    return {
        "loss": loss,
        "invariance": invariance,
        "variance": variance,
        "covariance": covariance,
    }
