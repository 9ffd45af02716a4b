"""The contract every backbone honours, whatever its group or library."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from hssl_cli.groups import AnyGroup
from hssl_cli.structured import BackboneOutput, read_output, scramble_positions, split_fields

if TYPE_CHECKING:
    from hssl_cli.config import ModelConfig


class Backbone(nn.Module):
    """Maps images in ``[0, 1]`` to a :class:`BackboneOutput`.

    Normalisation lives inside the model (as buffers) so a checkpoint carries it and
    the probe feeds the same raw images the trainer did; a per-channel affine map
    commutes with every rotation and reflection.
    """

    # How fibers pool space. Mean suits rotations; a shrunk image's content covers fewer
    # positions, so scale-group backbones (and their twins) take the maximum instead.
    spatial_pool: Literal["max", "mean"] = "mean"
    # Set by build_backbone for an unstructured model of the trivial group: the translation
    # group's structure-removed twin (hssl_cli.structured.scramble_positions).
    scrambled_positions: bool = False

    def __init__(
        self,
        group: AnyGroup,
        in_channels: int,
        num_fields: int,
        group_pool: Literal["max", "mean"],
    ) -> None:
        super().__init__()
        self.group = group
        self.in_channels = in_channels
        self.num_fields = num_fields
        self.group_pool = group_pool
        self.model_config: ModelConfig | None = None  # set by build_backbone
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))

    def set_normalization(self, mean: list[float], std: list[float]) -> None:
        self.input_mean.copy_(torch.tensor(mean))
        self.input_std.copy_(torch.tensor(std).clamp_min(1e-3))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.input_mean.view(1, -1, 1, 1)) / self.input_std.view(1, -1, 1, 1)

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        """``[B, C*|G|, H, W]`` for normalised images; what subclasses implement."""
        raise NotImplementedError

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        """Flat maps ``[B, C*|G|, H, W]`` after each stage whose output type is regular fields.

        What ``hssl inspect-equivariance`` measures layer by layer; the last entry is the
        map :meth:`forward` reads.
        """
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        flat = self.flat_feature_map(self.normalize(images))
        if self.scrambled_positions:
            flat = scramble_positions(flat)
        return read_output(split_fields(flat, self.group.order), self.group_pool, self.spatial_pool)


def trace_stages(
    modules: Iterable[nn.Module], inputs: Any, unwrap: Callable[[Any], torch.Tensor]
) -> list[tuple[str, torch.Tensor]]:
    """Run ``modules`` in turn, keeping the output after each activation and each pooling."""
    outputs: list[tuple[str, torch.Tensor]] = []
    counts: Counter[str] = Counter()
    for module in modules:
        inputs = module(inputs)
        kind = type(module).__name__
        stage = "conv" if "ReLU" in kind else "pool" if "Pool" in kind else None
        if stage:
            counts[stage] += 1
            outputs.append((f"{stage}{counts[stage]}", unwrap(inputs)))
    return outputs
