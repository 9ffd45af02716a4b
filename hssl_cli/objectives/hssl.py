"""H-SSL: homomorphic self-supervised learning (Keller et al. 2023; METHODS §2).

An equivariant backbone turns an input rotation into a permutation of the
fiber axis, ``f(T_g x) = rho(g) f(x)``, so a view's group part can be read from
the fibers of one forward pass instead of being applied to the input. Views
``z_i^a = h(pool_{g0 in G0} f(x_i)[:, g_i^a g0])`` enter NT-Xent as SimCLR's
views would. With base augmentations each view's non-group part still comes
from the input (two forwards, as SimCLR); without them one forward serves both
views, about half SimCLR's cost.

``fibers: translation`` reads views from the spatial positions of the un-pooled map
instead (group-pooled first when the model has a group axis): H-SSL for the
translation group of an ordinary CNN, with ``fiber_bundle_size`` the window size and
``spread`` the largest offset between the two views' windows.

``base_loss: vicreg`` replaces NT-Xent by VICReg (METHODS §2 allows either; Bardes et
al. 2022) on the two views' projections, with the paper's weights (25, 25, 1); the
shared head is then VICReg's expander (set ``projector_out_dim`` wide, e.g. 2048).
VICReg compares exactly two views, so it does not combine with ``all_fibers_positive``.
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
from hssl_cli.objectives.spatial_views import SpatialViews
from hssl_cli.objectives.vicreg import vicreg_loss
from hssl_cli.recipe import AugmentConfig
from hssl_cli.structured import BackboneOutput, pool_group

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.recipe import Recipe


class HsslConfig(ContrastiveConfig):
    name: Literal["hssl"] = "hssl"
    fibers: Literal["group", "translation"] = "group"
    pair_sampling: Literal["distinct", "iid"] = "distinct"
    spread: StrictInt | None = Field(default=None, ge=1)
    base_loss: Literal["infonce", "vicreg"] = "infonce"
    augment: AugmentConfig | None = None
    all_fibers_positive: bool = False


class HsslObjective(Objective):
    Config = HsslConfig

    def __init__(self, config: HsslConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: HsslConfig = config
        group = backbone.group
        distinct = config.pair_sampling == "distinct"
        if config.fibers == "translation":
            self.spatial = SpatialViews(
                config.fiber_bundle_size, config.bundle_pool, config.spread, distinct
            )
        else:
            self.views = FiberViews(
                group, config.fiber_bundle_size, config.bundle_pool, config.spread, distinct
            )
        self.augment = BaseAugmentation(config.augment) if config.augment else None
        self.head = projection_head(
            backbone.num_fields, config.projector_hidden_dim, config.projector_out_dim
        )

    @classmethod
    def check_recipe(cls, recipe: Recipe) -> None:
        config: HsslConfig = recipe.method  # type: ignore[assignment]
        if config.base_loss == "vicreg" and config.all_fibers_positive:
            raise ValueError(
                "method.base_loss=vicreg compares exactly two views; set "
                "method.all_fibers_positive=false (or use method.base_loss=infonce)"
            )
        if config.fibers == "translation":
            return  # window sizes are checked against the feature map at the first step
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
                "pick a group (model.group=rot4), method.fibers=translation, or method.augment"
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
            outputs = tuple(backbone(self.augment(images)) for _ in range(2))
        else:
            outputs = (backbone(images),)  # one forward serves both views
        if self.config.fibers == "translation":
            return self._translation_loss(outputs, batch)
        fibers = tuple(output.fibers for output in outputs)
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
        return self._base_loss(embeddings, sample_ids)

    def _translation_loss(
        self, outputs: tuple[BackboneOutput, ...], batch: int
    ) -> dict[str, torch.Tensor]:
        maps = [pool_group(o.feature_map, self.config.bundle_pool) for o in outputs]
        windows = [self.spatial.windows(m) for m in maps]
        rows, cols = windows[0].shape[-2:]
        device = windows[0].device
        if self.config.all_fibers_positive:
            features = [w.flatten(2).permute(2, 0, 1).flatten(0, 1) for w in windows]
            sample_ids = torch.arange(batch, device=device).repeat(rows * cols * len(windows))
            embeddings = self.head(torch.cat(features))
        else:
            first, second = self.spatial.sample_pairs(batch, rows, cols, device)
            features = [
                self.spatial.read(windows[0], first),
                self.spatial.read(windows[-1], second),
            ]
            embeddings = self.head(torch.cat(features))
            sample_ids = torch.arange(batch, device=device).repeat(2)
        return self._base_loss(embeddings, sample_ids)

    def _base_loss(
        self, embeddings: torch.Tensor, sample_ids: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """NT-Xent over all views, or VICReg on the two views' halves of ``embeddings``."""
        metrics = {"pair_acc": pair_accuracy(embeddings, sample_ids)}
        if self.config.base_loss == "vicreg":
            terms = vicreg_loss(*embeddings.chunk(2))
            logged = {name: value.detach() for name, value in terms.items() if name != "loss"}
            return {"loss": terms["loss"], **logged, **metrics}
        return {"loss": nt_xent(embeddings, sample_ids, self.config.temperature), **metrics}
