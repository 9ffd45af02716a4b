"""Projection heads shared by the contrastive objectives."""

from __future__ import annotations

from typing import TYPE_CHECKING

from torch import nn

if TYPE_CHECKING:
    from hssl_cli.config import ProjectorFields


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """SimCLR's projector: Linear-BN-ReLU-Linear (Chen et al. 2020; 512-2048-128 on CIFAR)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )


def projector(config: ProjectorFields, in_dim: int) -> nn.Sequential:
    """The projection head a method's ``projector_hidden_dim`` and ``projector_out_dim`` ask for."""
    return projection_head(in_dim, config.projector_hidden_dim, config.projector_out_dim)
