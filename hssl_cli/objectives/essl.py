"""E-SSL: predict which transformation was applied (Dangovski et al. 2022, arXiv:2111.00899).

Alone (``base: none``) it is transformation-prediction pretraining as compared by
Wang et al. (NeurIPS 2024): a pretext view, one of ``K`` transformations of
:mod:`~hssl_cli.objectives.pretext_tasks`, and cross-entropy on the head's guess.
As an add-on (``base: simclr``, ``byol``, ... any registered objective, configured
by its own nested ``base_method`` section) it is Dangovski et al.'s E-SSL:
``L = L_base + weight * CE``; E-SimCLR uses ``weight`` 0.4, a 16x16
RandomResizedCrop of a 32x32 image as the pretext view rotated by all 4 angles,
and a 2048-wide MLP head with LayerNorm.

Our design choices, all recipe options:

- **What the head reads.** A fully invariant feature cannot predict a rotation
  that the backbone is invariant to, so the head reads the group-pooled feature
  map kept spatial, average-pooled to a ``head_grid x head_grid`` grid and
  flattened. The same readout serves plain backbones; ``head_grid: 1`` there is
  Dangovski's globally pooled readout (validation rejects it where the backbone
  is exactly invariant to the task's transformations).
- **Pretext view.** ``augment`` (optional base augmentations, whose crop is the
  view's RandomResizedCrop) then a resize to ``crop_size`` pixels, then the
  transformation: ``label_sampling: all`` applies all ``K`` transformations to
  every image (Dangovski), ``random`` one random transformation per image (one
  forward of ``B`` images whatever ``K`` is, so tasks cost the same).
- **Explaining away** (Wang et al.): ``add`` / ``eliminate`` add ``+`` / ``-``
  ``class_weight`` times the class cross-entropy of a linear head on the pretext
  view's invariant features. The class head itself always learns to classify
  (it sees detached features); only the encoder's term changes sign, as a
  gradient-reversal layer would do (Ganin & Lempitsky 2015). A plain ``-CE`` would
  be unbounded below, since the jointly trained head could make it arbitrarily
  large. The logged ``loss`` is ``L_base + weight * CE + sign * class_weight * CE_class``.
- ``weight: 0`` with a base skips the pretext forward: the objective is then
  exactly the base objective.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from torch import nn

from hssl_cli.augment import BaseAugmentation
from hssl_cli.config import EsslConfig
from hssl_cli.distributed import global_count, local_rows
from hssl_cli.objectives import objective_class, pretext_task
from hssl_cli.objectives.base import Objective
from hssl_cli.structured import BackboneOutput, pool_group

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone

EXPLAINING_AWAY_SIGN = {"none": 0.0, "add": 1.0, "eliminate": -1.0}


def pretext_head(in_dim: int, hidden_dim: int, num_classes: int) -> nn.Sequential:
    """Dangovski et al.'s rotation predictor: Linear-LN-ReLU-Linear-LN-ReLU-Linear."""
    return nn.Sequential(
        nn.Linear(in_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, hidden_dim),
        nn.LayerNorm(hidden_dim),
        nn.ReLU(inplace=True),
        nn.Linear(hidden_dim, num_classes),
    )


def spatial_readout(
    output: BackboneOutput, grid: int, group_pool: Literal["max", "mean"]
) -> torch.Tensor:
    """Group-pooled feature map, average-pooled to ``grid x grid`` and flattened: ``[B, C*grid^2]``.

    Each position is invariant to the group but the grid rotates with the input,
    so an equivariant backbone can still tell orientations apart (our design).
    """
    pooled = pool_group(output.feature_map, group_pool)  # [B, C, H, W]
    return F.adaptive_avg_pool2d(pooled, grid).flatten(1)


def accuracy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return (logits.detach().argmax(1) == targets).float().mean()


def explaining_away_term(
    features: torch.Tensor, class_head: nn.Linear, class_labels: torch.Tensor, sign: float
) -> torch.Tensor:
    """Class CE that trains ``class_head`` as usual but reaches the encoder times ``sign``.

    Its value is ``sign * CE``; ``sign`` +1 is Wang et al.'s "add", -1 "eliminate" (a
    gradient-reversal layer that keeps the head a real classifier).
    """
    head_loss = F.cross_entropy(class_head(features.detach()), class_labels)
    through_frozen_head = F.linear(features, class_head.weight.detach(), class_head.bias.detach())
    encoder_loss = F.cross_entropy(through_frozen_head, class_labels)
    return sign * encoder_loss + (head_loss - head_loss.detach())


class EsslObjective(Objective):
    Config = EsslConfig

    def __init__(self, config: EsslConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: EsslConfig = config
        self.task = pretext_task(config.task)
        self.base = (
            objective_class(config.base)(config.base_method, backbone)
            if config.base != "none" and config.base_method is not None
            else None
        )
        self.augment = BaseAugmentation(config.augment) if config.augment else None
        self.head = (
            pretext_head(
                backbone.num_fields * config.head_grid**2,
                config.head_hidden_dim,
                self.task.num_classes,
            )
            if self.task.num_classes > 1
            else None
        )
        self.class_head = (
            nn.Linear(backbone.num_fields, config.class_count)
            if config.explaining_away != "none"
            else None
        )

    def pretext_view(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformed pretext view ``[N, C, H, W]`` and its transformation labels ``[N]``."""
        view = self.augment(images) if self.augment is not None else images
        size = self.config.crop_size
        if size is not None and tuple(view.shape[2:]) != (size, size):
            view = F.interpolate(
                view, size=(size, size), mode="bilinear", antialias=True, align_corners=False
            )
        batch, classes = view.shape[0], self.task.num_classes
        if self.config.label_sampling == "all":
            view = view.repeat(classes, 1, 1, 1)
            targets = torch.arange(classes, device=view.device).repeat_interleave(batch)
        else:
            targets = local_rows(torch.randint(classes, (global_count(batch),), device=view.device))
        return self.task.apply(view, targets), targets

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        config = self.config
        if self.class_head is not None and labels is None:
            raise ValueError(
                f"method.explaining_away={config.explaining_away} needs the batch's class labels"
            )
        terms: list[torch.Tensor] = []
        values: dict[str, torch.Tensor] = {}
        if self.base is not None:
            base_values = self.base(backbone, images, labels)
            terms.append(base_values.pop("loss"))
            values["base_loss"] = terms[-1].detach()
            values.update(base_values)
        head = self.head if config.weight > 0 else None
        if head is not None or self.class_head is not None:
            view, targets = self.pretext_view(images)
            output = backbone(view)
            if head is not None:
                logits = head(spatial_readout(output, config.head_grid, backbone.group_pool))
                pretext_loss = F.cross_entropy(logits, targets)
                terms.append(config.weight * pretext_loss)
                values["pretext_loss"] = pretext_loss.detach()
                values["pretext_acc"] = accuracy(logits, targets)
            if self.class_head is not None and labels is not None:
                class_labels = labels.repeat(view.shape[0] // images.shape[0])
                class_logits = self.class_head(output.invariant.detach())
                terms.append(
                    config.class_weight
                    * explaining_away_term(
                        output.invariant,
                        self.class_head,
                        class_labels,
                        EXPLAINING_AWAY_SIGN[config.explaining_away],
                    )
                )
                values["class_loss"] = F.cross_entropy(class_logits, class_labels).detach()
                values["class_acc"] = accuracy(class_logits, class_labels)
        if not terms:  # task none alone: nothing to learn, the encoder stays at random init
            terms.append(torch.zeros((), device=images.device, requires_grad=True))
        return {"loss": torch.stack(terms).sum(), **values}

    def after_step(self, backbone: Backbone, step: int, total_steps: int) -> None:
        if self.base is not None:
            self.base.after_step(backbone, step, total_steps)
