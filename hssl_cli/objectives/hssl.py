"""H-SSL: homomorphic self-supervised learning (Keller et al. 2023, arXiv:2211.08282).

An equivariant backbone turns an input rotation into a permutation of the
fiber axis, ``f(T_g x) = rho(g) f(x)``, so a view's group part can be read from
the fibers of one forward pass instead of being applied to the input. Views
``z_i^a = h(pool_{g0 in G0} f(x_i)[:, g_i^a g0])`` enter NT-Xent as SimCLR's
views would (sec. 3.2). With base augmentations each view's non-group part still
comes from the input (two forwards, as SimCLR); without them one forward serves both
views, about half SimCLR's cost.

``fibers: translation`` reads views from the spatial positions of the un-pooled map
instead (group-pooled first when the model has a group axis): H-SSL for the
translation group of an ordinary CNN, with ``fiber_bundle_size`` the window size and
``spread`` the largest offset between the two views' windows. Both come from a
:class:`~hssl_cli.objectives.fiber_views.ViewSource`, so the loss does not branch.

``base_loss: vicreg`` replaces NT-Xent by VICReg (Bardes et al. 2022) on the two views'
projections, with the paper's weights (25, 25, 1); the shared head is then VICReg's
expander (set ``projector_out_dim`` wide, e.g. 2048). VICReg compares exactly two
views, so it does not combine with ``all_fibers_positive``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hssl_cli.augment import BaseAugmentation
from hssl_cli.config import HsslConfig
from hssl_cli.losses import nt_xent, pair_accuracy, vicreg_loss
from hssl_cli.objectives.base import Objective
from hssl_cli.objectives.fiber_views import SpatialViews, ViewSource
from hssl_cli.objectives.group_views import group_fiber_views
from hssl_cli.objectives.heads import projector

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone


class HsslObjective(Objective):
    Config = HsslConfig

    def __init__(self, config: HsslConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: HsslConfig = config
        distinct = config.pair_sampling == "distinct"
        size, pool, spread = config.fiber_bundle_size, config.bundle_pool, config.spread
        self.views: ViewSource = (
            SpatialViews(size, pool, spread, distinct)
            if config.fibers == "translation"
            else group_fiber_views(backbone.group, size, pool, spread, distinct)
        )
        self.augment = BaseAugmentation(config.augment) if config.augment else None
        self.head = projector(config, backbone.num_fields)

    def embed(
        self,
        positions: tuple[torch.Tensor, torch.Tensor],
        chosen: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Projected views ``[2B, D]`` read from two samples' positions at ``(p1, p2)``."""
        features = [self.views.read(p, c) for p, c in zip(positions, chosen, strict=True)]
        return self.head(torch.cat(features))

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        batch = images.shape[0]
        if self.augment is not None:
            outputs = tuple(backbone(self.augment(images)) for _ in range(2))
        else:
            outputs = (backbone(images),)  # one forward serves both views
        positions = [self.views.positions(output) for output in outputs]
        if self.config.all_fibers_positive:
            count = self.views.count(positions[0])
            embeddings = self.head(torch.cat([self.views.every_view(p) for p in positions]))
            views_per_sample = count * len(positions)
        else:
            pair = self.views.sample_pairs(positions[0])
            embeddings = self.embed((positions[0], positions[-1]), pair)
            views_per_sample = 2
        sample_ids = torch.arange(batch, device=images.device).repeat(views_per_sample)
        return self.base_loss(embeddings, sample_ids)

    def base_loss(
        self, embeddings: torch.Tensor, sample_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """NT-Xent over all views, or VICReg on the two views' halves of ``embeddings``."""
        metrics = {"pair_acc": pair_accuracy(embeddings, sample_ids)}
        if self.config.base_loss == "vicreg":
            terms = vicreg_loss(*embeddings.chunk(2))
            logged = {name: value.detach() for name, value in terms.items() if name != "loss"}
            return {"loss": terms["loss"], **logged, **metrics}
        return {"loss": nt_xent(embeddings, sample_ids, self.config.temperature), **metrics}
