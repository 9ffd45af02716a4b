"""Plain-torch networks rebuilt from a JSON description: what an export folder loads into.

An export describes the backbone's body as a tree of layer specs, each a JSON object whose
``"layer"`` names an entry of ``PLAIN_LAYERS`` (its constructor arguments beside it) or a
container (``sequential``, ``residual``). Rebuilding runs only our own code on that tree and
reads the weights from safetensors, so loading an export executes nothing from the file
(no pickle) and needs neither escnn nor the model classes that trained it.

State-dict keys follow the tree: a ``sequential``'s children are ``0.``, ``1.``, ...; a
``residual``'s are ``main.``, ``shortcut.`` and ``activation.``; a leaf's are torch's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from hssl_cli.structured import BackboneOutput, read_output, split_fields

LayerSpec = dict[str, Any]


def _has_bias(module: nn.Module) -> bool:
    return getattr(module, "bias", None) is not None


@dataclass(frozen=True)
class PlainLayer:
    """A torch layer described by its constructor arguments, read back from its attributes."""

    module_class: type[nn.Module]
    arguments: tuple[str, ...] = ()
    readers: dict[str, Callable[[nn.Module], Any]] = field(default_factory=dict)

    def describe(self, module: nn.Module) -> dict[str, Any]:
        values = {
            name: self.readers.get(name, lambda m, name=name: getattr(m, name))(module)
            for name in self.arguments
        }
        return {name: list(v) if isinstance(v, tuple) else v for name, v in values.items()}

    def build(self, arguments: dict[str, Any]) -> nn.Module:
        return self.module_class(**arguments)


PLAIN_LAYERS: dict[str, PlainLayer] = {
    "conv2d": PlainLayer(
        nn.Conv2d,
        (
            "in_channels",
            "out_channels",
            "kernel_size",
            "stride",
            "padding",
            "dilation",
            "groups",
            "bias",
            "padding_mode",
        ),
        {"bias": _has_bias},
    ),
    "batch_norm2d": PlainLayer(
        nn.BatchNorm2d, ("num_features", "eps", "momentum", "affine", "track_running_stats")
    ),
    "relu": PlainLayer(nn.ReLU, ("inplace",)),
    "elu": PlainLayer(nn.ELU, ("alpha", "inplace")),
    "max_pool2d": PlainLayer(
        nn.MaxPool2d, ("kernel_size", "stride", "padding", "dilation", "ceil_mode")
    ),
    "avg_pool2d": PlainLayer(
        nn.AvgPool2d,
        ("kernel_size", "stride", "padding", "ceil_mode", "count_include_pad", "divisor_override"),
    ),
    "identity": PlainLayer(nn.Identity),
}


class Residual(nn.Module):
    """``activation(main(x) + shortcut(x))``: ResNet's BasicBlock, whatever its layers."""

    def __init__(self, main: nn.Module, shortcut: nn.Module, activation: nn.Module) -> None:
        super().__init__()
        self.main = main
        self.shortcut = shortcut
        self.activation = activation

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.activation(self.main(features) + self.shortcut(features))


def build_network(spec: LayerSpec) -> nn.Module:
    """The module a layer spec describes (raises KeyError/TypeError/ValueError if malformed)."""
    kind = spec["layer"]
    if kind == "sequential":
        return nn.Sequential(*(build_network(child) for child in spec["layers"]))
    if kind == "residual":
        return Residual(*(build_network(spec[part]) for part in ("main", "shortcut", "activation")))
    if kind not in PLAIN_LAYERS:
        raise ValueError(f"unknown layer {kind!r}")
    return PLAIN_LAYERS[kind].build({k: v for k, v in spec.items() if k != "layer"})


class ExportedBackbone(nn.Module):
    """An exported backbone: normalisation, the plain network, then the structured readout.

    Returns the same :class:`~hssl_cli.structured.BackboneOutput` as the model it came from
    (``.invariant`` ``[B, C]``, ``.full`` ``[B, C*|G|]``, ``.fibers``, ``.feature_map``); the
    group pooling is a plain max or mean over the fiber axis.
    """

    def __init__(
        self,
        network: nn.Module,
        in_channels: int,
        group_order: int,
        group_pool: Literal["max", "mean"],
    ) -> None:
        super().__init__()
        self.network = network
        self.in_channels = in_channels
        self.group_order = group_order
        self.group_pool = group_pool
        self.register_buffer("input_mean", torch.zeros(in_channels))
        self.register_buffer("input_std", torch.ones(in_channels))

    def forward(self, images: torch.Tensor) -> BackboneOutput:
        mean = self.input_mean.view(1, -1, 1, 1)
        std = self.input_std.view(1, -1, 1, 1)
        flat = self.network((images - mean) / std)
        return read_output(split_fields(flat, self.group_order), self.group_pool)
