"""VICReg (Bardes, Ponce & LeCun, ICLR 2022; METHODS §1): variance-invariance-covariance.

No negatives: two views' embeddings are pulled together (invariance, a mean squared
error), while each embedding dimension is kept spread over the batch (variance, a
hinge on its standard deviation at 1) and the dimensions decorrelated (covariance,
the squared off-diagonal covariances). The variance and covariance terms are what
prevent collapse. The same loss can replace NT-Xent inside H-SSL (METHODS §2;
``method.base_loss: vicreg`` of :mod:`hssl_cli.objectives.hssl`).

Example::

    z_a, z_b = torch.randn(256, 2048), torch.randn(256, 2048)
    terms = vicreg_loss(z_a, z_b)
    terms["loss"].backward()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictInt
from torch import nn

from hssl_cli.augment import BaseAugmentation
from hssl_cli.objectives.base import Objective, ReadoutConfig
from hssl_cli.objectives.fiber_views import FiberViews
from hssl_cli.objectives.ntxent import pair_accuracy
from hssl_cli.recipe import AugmentConfig

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.structured import BackboneOutput


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

    ``loss = lambda s(Z_a, Z_b) + mu [v(Z_a) + v(Z_b)] + nu [c(Z_a) + c(Z_b)]`` as in the
    paper's eq. (6) (and solo-learn): ``s`` the mean squared error, ``v`` the variance
    hinge, ``c`` the covariance penalty. The returned ``invariance``, ``variance`` and
    ``covariance`` are the unweighted terms (``v`` and ``c`` summed over both branches).
    Defaults are the paper's ``lambda = mu = 25``, ``nu = 1``, ``eps = 1e-4``.
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"vicreg_loss needs two [N, D] tensors of one shape, got {z_a.shape}")
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


def vicreg_expander(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Sequential:
    """VICReg's expander: ``layers`` Linear maps, BN + ReLU after all but the last.

    The paper (§4.1) uses three layers, 8192 wide on ImageNet; solo-learn's CIFAR
    setting is 2048-2048-2048. ``layers=2`` is SimCLR's projector shape.
    """
    blocks: list[nn.Module] = []
    width = in_dim
    for _ in range(layers - 1):
        blocks += [nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        width = hidden_dim
    blocks.append(nn.Linear(width, out_dim))
    return nn.Sequential(*blocks)


class VicregConfig(ReadoutConfig):
    """VICReg options; the expander is ``projector_hidden_dim`` wide with ``expander_layers``.

    CPU-sized defaults (512-512-512); the CIFAR recipes set solo-learn's 2048-2048-2048.
    """

    name: Literal["vicreg"] = "vicreg"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    projector_hidden_dim: StrictInt = Field(default=512, ge=1)
    projector_out_dim: StrictInt = Field(default=512, ge=1)
    expander_layers: StrictInt = Field(default=3, ge=2)
    invariance_weight: float = Field(default=25.0, ge=0)
    variance_weight: float = Field(default=25.0, ge=0)
    covariance_weight: float = Field(default=1.0, ge=0)


class VicregObjective(Objective):
    """Two base-augmented views, backbone, expander, :func:`vicreg_loss`.

    Readouts as SimCLR's: ``fiber`` (default) reads the identity fiber bundle of an
    equivariant backbone, so ``augment.group_element: true`` is the A-SSL counterpart
    of H-SSL with ``base_loss: vicreg``; ``invariant`` reads the group-pooled features.
    """

    Config = VicregConfig

    def __init__(self, config: VicregConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: VicregConfig = config
        self.views = FiberViews(backbone.group, config.fiber_bundle_size, config.bundle_pool)
        self.augment = BaseAugmentation(config.augment, backbone.group)
        self.expander = vicreg_expander(
            backbone.num_fields,
            config.projector_hidden_dim,
            config.projector_out_dim,
            config.expander_layers,
        )

    def read(self, output: BackboneOutput) -> torch.Tensor:
        return self.views.read_output(output, self.config.readout)

    def embed(self, backbone: Backbone, view: torch.Tensor) -> torch.Tensor:
        """Expanded embeddings ``[B, D]`` of one augmented batch.

        Each view goes through the expander on its own (its own BatchNorm statistics),
        as in the official VICReg code and solo-learn.
        """
        return self.expander(self.read(backbone(view)))

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        z_a, z_b = (self.embed(backbone, self.augment(images)) for _ in range(2))
        terms = vicreg_loss(
            z_a,
            z_b,
            self.config.invariance_weight,
            self.config.variance_weight,
            self.config.covariance_weight,
        )
        sample_ids = torch.arange(images.shape[0], device=images.device).repeat(2)
        logged = {name: value.detach() for name, value in terms.items() if name != "loss"}
        return {
            "loss": terms["loss"],
            **logged,
            "pair_acc": pair_accuracy(torch.cat([z_a, z_b]), sample_ids),
        }
