"""Invariant contrastive loss (Mukuta & Harada; our design, see docs/methods.md).

NT-Xent compares views by cosine similarity of vectors; here the embeddings are
*lifted*: every fiber of ``[B, C, |G|]`` goes through one shared projection head,
giving ``z`` of shape ``[B, |G|, D]`` on which ``rho(g)`` permutes the group axis.
The similarity inside NT-Xent is made group-invariant by pooling over the orbit:

``s(z1, z2) = pool_g cos(vec(z1), vec(rho(g) z2))``, ``pool`` = ``max`` or
``pooling_temperature * logsumexp(. / pooling_temperature)`` (a smooth max).

Since ``{rho(g) rho(h) : g in G} = rho(G)`` for any ``h``, transforming either view
by any group element leaves ``s``, and so the loss, unchanged; on an equivariant
backbone this holds for input transformations, exactly. Plain NT-Xent on the
flattened lifted embeddings changes. With the trivial group it is SimCLR.

Views come from :class:`~hssl_cli.augment.BaseAugmentation` (a random group
element in it, ``augment.group_element``, changes nothing on an equivariant
backbone; it matters only for the unstructured control).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from hssl_cli.config import InvcontrastConfig
from hssl_cli.distributed import gather_rows, gather_sample_ids
from hssl_cli.losses import (
    group_invariant_similarity,
    nt_xent_from_similarity,
    pair_accuracy_from_similarity,
)
from hssl_cli.objectives.base import Features, Scalars, TwoViewObjective, Views
from hssl_cli.objectives.heads import projector
from hssl_cli.structured import fiber_tokens

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.structured import BackboneOutput


class InvcontrastObjective(TwoViewObjective):
    Config = InvcontrastConfig

    def __init__(self, config: InvcontrastConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: InvcontrastConfig = config
        self.head = projector(config, backbone.num_fields)
        self.register_buffer(
            "fiber_permutations",
            torch.tensor(backbone.group.fiber_permutations),
            persistent=False,
        )

    def read(self, output: BackboneOutput) -> torch.Tensor:
        return output.fibers

    def lift(self, fibers: torch.Tensor) -> torch.Tensor:
        """``[B, C, |G|]`` fibers -> ``[B, |G|, D]``: the shared head applied to every fiber."""
        tokens = fiber_tokens(fibers)  # [B, |G|, C]
        batch, order, _ = tokens.shape
        return self.head(tokens.reshape(batch * order, -1)).view(batch, order, -1)

    def loss(self, lifted: torch.Tensor, sample_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """NT-Xent on the orbit-pooled similarity of the global batch's lifted embeddings."""
        lifted, sample_ids = gather_rows(lifted), gather_sample_ids(sample_ids)
        similarity = group_invariant_similarity(
            lifted,
            lifted,
            self.fiber_permutations,
            self.config.pooling,
            self.config.pooling_temperature,
        )
        return {
            "loss": nt_xent_from_similarity(similarity, sample_ids, self.config.temperature),
            "pair_acc": pair_accuracy_from_similarity(similarity, sample_ids),
        }

    def view_loss(self, backbone: Backbone, views: Views, features: Features) -> Scalars:
        sample_ids = torch.arange(len(views[0]), device=views[0].device).repeat(2)
        return self.loss(self.lift(torch.cat(features)), sample_ids)
