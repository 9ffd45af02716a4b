"""Projection heads shared by the contrastive objectives."""

from __future__ import annotations

from torch import nn


def projection_head(in_dim: int, hidden_dim: int, out_dim: int) -> nn.Sequential:
    """SimCLR's projector: Linear-BN-ReLU-Linear (METHODS §1; 512-2048-128 on CIFAR)."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim, bias=False),
        nn.BatchNorm1d(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, out_dim),
    )
