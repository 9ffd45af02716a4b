"""H-SSL: homomorphic self-supervised learning (Keller et al. 2023; METHODS §2).

An equivariant backbone turns an input rotation into a permutation of the
fiber axis, ``f(T_g x) = rho(g) f(x)``, so a view's group part can be read from
the fibers of one forward pass instead of being applied to the input. Views
``z_i^a = h(pool_{g0 in G0} f(x_i)[:, g_i^a g0])`` enter NT-Xent as SimCLR's
views would. With base augmentations each view's non-group part still comes
from the input (two forwards, as SimCLR); without them one forward serves both
views, about half SimCLR's cost.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import torch
from pydantic import Field, StrictInt

from hssl_cli.augment import BaseAugmentation
from hssl_cli.groups import get_group
from hssl_cli.objectives.base import ContrastiveConfig, Objective, check_sizes_fit_group
from hssl_cli.objectives.fiber_views import FiberViews
from hssl_cli.objectives.heads import projection_head
from hssl_cli.objectives.ntxent import nt_xent, pair_accuracy
from hssl_cli.recipe import AugmentConfig

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.recipe import Recipe


class HsslConfig(ContrastiveConfig):
    name: Literal["hssl"] = "hssl"
    pair_sampling: Literal["distinct", "iid"] = "distinct"
    spread: StrictInt | None = Field(default=None, ge=1)
    base_loss: Literal["infonce"] = "infonce"
    augment: AugmentConfig | None = None
    all_fibers_positive: bool = False


class HsslObjective(Objective):
    Config = HsslConfig

    def __init__(self, config: HsslConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: HsslConfig = config
        group = backbone.group
        self.views = FiberViews(
            group,
            config.fiber_bundle_size,
            config.bundle_pool,
            spread=config.spread,
            distinct=config.pair_sampling == "distinct",
        )
        self.augment = BaseAugmentation(config.augment) if config.augment else None
        self.head = projection_head(
            backbone.num_fields, config.projector_hidden_dim, config.projector_out_dim
        )

    @classmethod
    def check_recipe(cls, recipe: Recipe) -> None:
        config: HsslConfig = recipe.method  # type: ignore[assignment]
        group = get_group(recipe.model.group)
        check_sizes_fit_group(recipe, ("fiber_bundle_size", "spread"))
        if config.augment is not None and config.augment.group_element:
            raise ValueError(
                "hssl reads the group part of a view from fibers; "
                "set method.augment.group_element=false (or use method.name=simclr)"
            )
        if group.order == 1 and config.augment is None:
            raise ValueError(
                "hssl on the trivial group has one fiber, so views would be identical; "
                "pick a group (model.group=rot4) or enable method.augment"
            )
        distinct_room = (config.spread or group.order) >= 2
        if group.order > 1 and config.pair_sampling == "distinct" and not distinct_room:
            raise ValueError("method.spread=1 leaves no distinct element; use spread >= 2")

    def embed(
        self,
        fibers: tuple[torch.Tensor, torch.Tensor],
        elements: tuple[torch.Tensor, torch.Tensor],
    ) -> torch.Tensor:
        """Projected views ``[2B, D]`` for given per-sample elements ``(g1, g2)``."""
        features = [self.views.read(f, g) for f, g in zip(fibers, elements, strict=True)]
        return self.head(torch.cat(features))

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        batch = images.shape[0]
        if self.augment is not None:
            fibers = tuple(backbone(self.augment(images)).fibers for _ in range(2))
        else:
            shared = backbone(images).fibers
            fibers = (shared,)
        if self.config.all_fibers_positive:
            order = self.views.group.order
            every = torch.arange(order, device=images.device).repeat_interleave(batch)
            features = [self.views.read(f.repeat(order, 1, 1), every) for f in fibers]
            embeddings = self.head(torch.cat(features))
            sample_ids = torch.arange(batch, device=images.device).repeat(order * len(fibers))
        else:
            pair = self.views.sample_pairs(batch)
            embeddings = self.embed((fibers[0], fibers[-1]), pair)
            sample_ids = torch.arange(batch, device=images.device).repeat(2)
        loss = nt_xent(embeddings, sample_ids, self.config.temperature)
        return {"loss": loss, "pair_acc": pair_accuracy(embeddings, sample_ids)}
