"""SimCLR (Chen et al. 2020, arXiv:2002.05709): two augmented views, NT-Xent.

On an equivariant backbone the default readout is the identity fiber bundle,
so that a random group element in the augmentation is the A-SSL counterpart of
H-SSL's fiber views (Keller et al. 2023, sec. 3.2); ``readout: invariant`` uses the
group-pooled features instead, which no group augmentation can change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hssl_cli.config import SimclrConfig
from hssl_cli.losses import nt_xent, pair_accuracy
from hssl_cli.objectives.base import Features, ReadoutObjective, Scalars, Views
from hssl_cli.objectives.heads import projector

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone


class SimclrObjective(ReadoutObjective):
    Config = SimclrConfig

    def __init__(self, config: SimclrConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: SimclrConfig = config
        self.head = projector(config, backbone.num_fields)

    def view_loss(self, backbone: Backbone, views: Views, features: Features) -> Scalars:
        embeddings = self.head(torch.cat(features))
        sample_ids = torch.arange(len(views[0]), device=embeddings.device).repeat(2)
        loss = nt_xent(embeddings, sample_ids, self.config.temperature)
        return {"loss": loss, "pair_acc": pair_accuracy(embeddings, sample_ids)}
