"""A target network that follows an online one by exponential moving average (BYOL).

BYOL (Grill et al., NeurIPS 2020; docs/methods.md, BYOL) regresses the online network's
predictions onto a slowly moving copy of itself: after each optimiser step the
target's parameters become ``xi <- tau xi + (1 - tau) theta`` with the cosine schedule
``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``, from ``tau_base`` at step 0 to 1
at the last step ``K``.

Design choices:

- The target backbone is rebuilt from the online one's recipe
  (``build_backbone(model_config, in_channels, initialize=False)``) and loaded with its
  state dict, never ``copy.deepcopy``'d: deep-copying escnn modules copies their
  cached bases and can blow up memory. Plain torch heads are deep-copied.
- Target parameters have ``requires_grad=False``, so the trainer's optimiser (which
  takes only parameters that require gradients) never touches them.
- The target always stays in train mode, as in BYOL, where its BatchNorm uses batch
  statistics. This also keeps escnn from caching expanded filters (it does so in eval
  mode), which the moving average would leave stale.
- Buffers (BatchNorm statistics, the input normalisation) are copied from the online
  network at each update rather than averaged: in train mode they never affect the
  target's output, and copying keeps the target a complete, valid model. escnn shares
  its constant sampled bases between the twins (its basis cache), so those cost nothing.

The target is a submodule of its objective, so checkpoints hold it and ``--resume``
continues the moving average exactly.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from hssl_cli.models.backbone import Backbone
    from hssl_cli.structured import BackboneOutput


def cosine_momentum(base_momentum: float, step: int, total_steps: int) -> float:
    """BYOL's ``tau = 1 - (1 - tau_base) (cos(pi k / K) + 1) / 2``, ``k / K`` clamped to [0, 1]."""
    progress = min(1.0, max(0.0, step / total_steps)) if total_steps > 0 else 1.0
    return 1 - (1 - base_momentum) * (math.cos(math.pi * progress) + 1) / 2


def build_twin_backbone(online_backbone: Backbone) -> Backbone:
    """A new backbone built from ``online_backbone``'s recipe, holding its current state."""
    from hssl_cli.models import build_backbone

    if online_backbone.model_config is None:
        raise ValueError(
            "the online backbone has no model_config; build it with "
            "hssl_cli.models.build_backbone so a target twin can be rebuilt from its recipe"
        )
    twin = build_backbone(
        online_backbone.model_config, online_backbone.in_channels, initialize=False
    )
    was_training = online_backbone.training
    online_backbone.train()  # escnn adds eval-only buffers: copy train-mode states
    twin.train()
    twin.load_state_dict(online_backbone.state_dict())
    online_backbone.train(was_training)
    return twin.to(online_backbone.input_mean.device)


class EmaTarget(nn.Module):
    """BYOL's target: a backbone and head that follow online ones by moving average."""

    def __init__(
        self, online_backbone: Backbone, online_head: nn.Module, base_momentum: float = 0.99
    ) -> None:
        super().__init__()
        if not 0 <= base_momentum <= 1:
            raise ValueError(f"base_momentum must lie in [0, 1], got {base_momentum}")
        self.base_momentum = base_momentum
        self.backbone = build_twin_backbone(online_backbone)
        self.head = copy.deepcopy(online_head)
        self.requires_grad_(False)
        self.train()

    def train(self, mode: bool = True) -> EmaTarget:
        """Stays in train mode whatever is asked (see the module docstring)."""
        return super().train(True)

    def _pairs(
        self, online_backbone: Backbone, online_head: nn.Module
    ) -> Iterator[tuple[nn.Module, nn.Module]]:
        yield self.backbone, online_backbone
        yield self.head, online_head

    @torch.no_grad()
    def update(
        self, online_backbone: Backbone, online_head: nn.Module, step: int, total_steps: int
    ) -> None:
        """``xi <- tau xi + (1 - tau) theta`` at ``tau = cosine_momentum(...)``; buffers copied."""
        tau = cosine_momentum(self.base_momentum, step, total_steps)
        for target, online in self._pairs(online_backbone, online_head):
            online_parameters = dict(online.named_parameters())
            for name, parameter in target.named_parameters():
                parameter.mul_(tau).add_(online_parameters[name].detach(), alpha=1 - tau)
            online_buffers = dict(online.named_buffers())
            for name, buffer in target.named_buffers():
                source = online_buffers.get(name)
                if source is not None and source.data_ptr() != buffer.data_ptr():
                    buffer.copy_(source)  # escnn's cached bases are shared: nothing to copy

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> BackboneOutput:
        """The target backbone's structured output, without gradients."""
        return self.backbone(images)

    @torch.no_grad()
    def project(self, features: torch.Tensor) -> torch.Tensor:
        """The target head on (target) features, without gradients."""
        return self.head(features)
