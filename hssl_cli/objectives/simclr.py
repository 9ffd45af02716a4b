"""SimCLR (Chen et al. 2020; METHODS §1): two augmented views, NT-Xent.

On an equivariant backbone the default readout is the identity fiber bundle,
so that a random group element in the augmentation is the A-SSL counterpart of
H-SSL's fiber views (METHODS §2); ``readout: invariant`` uses the group-pooled
features instead, which no group augmentation can change.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field

from hssl_cli.augment import BaseAugmentation
from hssl_cli.objectives.base import ContrastiveConfig, Objective
from hssl_cli.objectives.fiber_views import FiberViews
from hssl_cli.objectives.heads import projection_head
from hssl_cli.objectives.ntxent import nt_xent, pair_accuracy
from hssl_cli.recipe import AugmentConfig

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.structured import BackboneOutput


class SimclrConfig(ContrastiveConfig):
    name: Literal["simclr"] = "simclr"
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    readout: Literal["fiber", "invariant"] = "fiber"


class SimclrObjective(Objective):
    Config = SimclrConfig

    def __init__(self, config: SimclrConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: SimclrConfig = config
        self.views = FiberViews(backbone.group, config.fiber_bundle_size, config.bundle_pool)
        self.augment = BaseAugmentation(config.augment, backbone.group)
        self.head = projection_head(
            backbone.num_fields, config.projector_hidden_dim, config.projector_out_dim
        )

    def read(self, output: BackboneOutput) -> torch.Tensor:
        return self.views.read_output(output, self.config.readout)

    def embed(self, backbone: Backbone, views: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Projected views ``[2B, D]`` of two already augmented batches."""
        return self.head(torch.cat([self.read(backbone(view)) for view in views]))

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        embeddings = self.embed(backbone, (self.augment(images), self.augment(images)))
        sample_ids = torch.arange(images.shape[0], device=images.device).repeat(2)
        loss = nt_xent(embeddings, sample_ids, self.config.temperature)
        return {"loss": loss, "pair_acc": pair_accuracy(embeddings, sample_ids)}
