"""Invariant contrastive loss (Mukuta & Harada; METHODS §4, our design).

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

from typing import TYPE_CHECKING, Literal

import torch
import torch.nn.functional as F
from pydantic import Field, StrictInt

from hssl_cli.augment import BaseAugmentation
from hssl_cli.objectives.base import Objective
from hssl_cli.objectives.heads import projection_head
from hssl_cli.recipe import AugmentConfig, MethodConfig
from hssl_cli.structured import GROUP_AXIS

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone


class InvcontrastConfig(MethodConfig):
    name: Literal["invcontrast"] = "invcontrast"
    temperature: float = Field(default=0.5, gt=0)
    projector_hidden_dim: StrictInt = Field(default=512, ge=1)
    projector_out_dim: StrictInt = Field(default=128, ge=1)
    pooling: Literal["max", "logsumexp"] = "max"
    pooling_temperature: float = Field(default=0.1, gt=0)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)


def group_invariant_similarity(
    first: torch.Tensor,
    second: torch.Tensor,
    fiber_permutations: torch.Tensor,
    pooling: Literal["max", "logsumexp"] = "max",
    pooling_temperature: float = 0.1,
) -> torch.Tensor:
    """``[N, |G|, D]`` x ``[M, |G|, D]`` -> ``[N, M]``: ``pool_g cos(vec(a), vec(rho(g) b))``.

    ``fiber_permutations[g]`` lists source indices: ``(rho(g) b)[i] = b[perm[g][i]]``
    (:attr:`hssl_cli.groups.Group.fiber_permutations`).
    """
    first = F.normalize(first.flatten(1), dim=1)
    second = F.normalize(second.flatten(1), dim=1).view_as(second)
    per_element = torch.stack(
        [first @ second[:, permutation].flatten(1).T for permutation in fiber_permutations]
    )  # [|G|, N, M]
    if pooling == "max":
        return per_element.amax(0)
    return pooling_temperature * torch.logsumexp(per_element / pooling_temperature, dim=0)


def nt_xent_from_similarity(
    similarity: torch.Tensor, sample_ids: torch.Tensor, temperature: float
) -> torch.Tensor:
    """NT-Xent (METHODS §1) given the pairwise similarity of all views; rows with equal ids pair."""
    self_mask = torch.eye(len(similarity), dtype=torch.bool, device=similarity.device)
    logits = (similarity / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (sample_ids[:, None] == sample_ids[None, :]) & ~self_mask
    positive_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1) / positives.sum(1)
    return -positive_log_prob.mean()


def similarity_pair_accuracy(similarity: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
    """Share of views whose most similar other view is their positive."""
    others = similarity.detach().clone().fill_diagonal_(float("-inf"))
    return (sample_ids[others.argmax(1)] == sample_ids).float().mean()


class InvcontrastObjective(Objective):
    Config = InvcontrastConfig

    def __init__(self, config: InvcontrastConfig, backbone: Backbone) -> None:
        super().__init__(config, backbone)
        self.config: InvcontrastConfig = config
        self.augment = BaseAugmentation(config.augment, backbone.group)
        self.head = projection_head(
            backbone.num_fields, config.projector_hidden_dim, config.projector_out_dim
        )
        self.register_buffer(
            "fiber_permutations",
            torch.tensor(backbone.group.fiber_permutations),
            persistent=False,
        )

    def lift(self, fibers: torch.Tensor) -> torch.Tensor:
        """``[B, C, |G|]`` fibers -> ``[B, |G|, D]``: the shared head applied to every fiber."""
        per_fiber = fibers.movedim(GROUP_AXIS, 1)  # [B, |G|, C]
        batch, order, _ = per_fiber.shape
        return self.head(per_fiber.reshape(batch * order, -1)).view(batch, order, -1)

    def embed(self, backbone: Backbone, views: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """Lifted embeddings ``[2B, |G|, D]`` of two already augmented batches."""
        return self.lift(torch.cat([backbone(view).fibers for view in views]))

    def loss(self, lifted: torch.Tensor, sample_ids: torch.Tensor) -> dict[str, torch.Tensor]:
        similarity = group_invariant_similarity(
            lifted,
            lifted,
            self.fiber_permutations,
            self.config.pooling,
            self.config.pooling_temperature,
        )
        return {
            "loss": nt_xent_from_similarity(similarity, sample_ids, self.config.temperature),
            "pair_acc": similarity_pair_accuracy(similarity, sample_ids),
        }

    def forward(
        self, backbone: Backbone, images: torch.Tensor, labels: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        lifted = self.embed(backbone, (self.augment(images), self.augment(images)))
        sample_ids = torch.arange(images.shape[0], device=images.device).repeat(2)
        return self.loss(lifted, sample_ids)
