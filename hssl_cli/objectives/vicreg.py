"""VICReg (Bardes, Ponce & LeCun, ICLR 2022, arXiv:2105.04906) as an objective.

Two base-augmented views, backbone, expander, :func:`hssl_cli.losses.vicreg_loss`.
Readouts as SimCLR's: ``fiber`` (default) reads the identity fiber bundle of an
equivariant backbone, so ``augment.group_element: true`` is the A-SSL counterpart of
H-SSL with ``base_loss: vicreg``; ``invariant`` reads the group-pooled features.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from hssl_cli.config import VicregConfig
from hssl_cli.losses import pair_accuracy, vicreg_loss
from hssl_cli.objectives.base import Features, ReadoutObjective, Scalars, Views

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone


def vicreg_expander(in_dim: int, hidden_dim: int, out_dim: int, layers: int) -> nn.Sequential:
    """VICReg's expander: ``layers`` Linear maps, BN + ReLU after all but the last.

    The paper (sec. 4.1) uses three layers, 8192 wide on ImageNet; solo-learn's CIFAR
    setting is 2048-2048-2048. ``layers=2`` is SimCLR's projector shape.
    """
    blocks: list[nn.Module] = []
    width = in_dim
    for _ in range(layers - 1):
        blocks += [nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True)]
        width = hidden_dim
    blocks.append(nn.Linear(width, out_dim))
    return nn.Sequential(*blocks)


class VicregObjective(ReadoutObjective):
    Config = VicregConfig

    def __init__(self, config: VicregConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: VicregConfig = config
        self.expander = vicreg_expander(
            backbone.num_fields,
            config.projector_hidden_dim,
            config.projector_out_dim,
            config.expander_layers,
        )

    def view_loss(self, backbone: Backbone, views: Views, features: Features) -> Scalars:
        # Each view goes through the expander on its own (its own BatchNorm statistics),
        # as in the official VICReg code and solo-learn.
        z_a, z_b = (self.expander(feature) for feature in features)
        terms = vicreg_loss(
            z_a,
            z_b,
            self.config.invariance_weight,
            self.config.variance_weight,
            self.config.covariance_weight,
        )
        sample_ids = torch.arange(len(views[0]), device=z_a.device).repeat(2)
        logged = {name: value.detach() for name, value in terms.items() if name != "loss"}
        return {
            "loss": terms["loss"],
            **logged,
            "pair_acc": pair_accuracy(torch.cat([z_a, z_b]), sample_ids),
        }
