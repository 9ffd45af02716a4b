"""A trained backbone as layer specs plus weights: the escnn layers through their ``export()``.

escnn's ``export()`` turns each equivariant layer into the torch layer that computes the same
map in eval mode: ``R2Conv`` into a ``Conv2d`` holding the expanded filter, ``InnerBatchNorm``
into a ``BatchNorm2d`` whose statistics repeat each field's across its ``|G|`` channels,
``ReLU``/``ELU`` and ``PointwiseMaxPool2D`` into their torch twins (``PointwiseAvgPool2D``,
which has no ``export()``, into ``AvgPool2d``). Plain torch layers are described as they are;
our containers (``ResNet18Body``, the BasicBlocks) become ``sequential`` and ``residual``
specs (see :mod:`hssl_cli.export.plain_network`).

escnn is imported only when a layer comes from it, so plain backbones export without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn

from hssl_cli.errors import HsslUserError
from hssl_cli.export.plain_network import PLAIN_LAYERS, LayerSpec
from hssl_cli.models.backbone import Backbone


@dataclass
class DescribedNetwork:
    """A layer spec and the tensors of the module :func:`build_network` makes from it."""

    spec: LayerSpec
    tensors: dict[str, torch.Tensor]


def _prefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {f"{prefix}.{key}": value for key, value in tensors.items()}


def _sequential(modules: Iterable[nn.Module]) -> DescribedNetwork:
    """Children in order, identities dropped (they only shift the keys)."""
    children = [describe(m) for m in modules if not isinstance(m, nn.Identity)]
    tensors: dict[str, torch.Tensor] = {}
    for index, child in enumerate(children):
        tensors |= _prefixed(str(index), child.tensors)
    return DescribedNetwork({"layer": "sequential", "layers": [c.spec for c in children]}, tensors)


def _residual(
    main: list[nn.Module], shortcut: nn.Module | None, activation: nn.Module
) -> DescribedNetwork:
    parts = {
        "main": _sequential(main),
        "shortcut": describe(shortcut if shortcut is not None else nn.Identity()),
        "activation": describe(activation),
    }
    tensors: dict[str, torch.Tensor] = {}
    for name, part in parts.items():
        tensors |= _prefixed(name, part.tensors)
    return DescribedNetwork(
        {"layer": "residual", **{name: part.spec for name, part in parts.items()}}, tensors
    )


def _hssl_basic_block(block: nn.Module) -> DescribedNetwork:
    """:class:`hssl_cli.models.equivariant_resnet.BasicBlock` (escnn or plain layers)."""
    main = [block.conv1, block.pool, block.bn1, block.relu1, block.conv2, block.bn2]
    return _residual(main, block.shortcut, block.relu2)


def _torchvision_basic_block(block: nn.Module) -> DescribedNetwork:
    main = [block.conv1, block.bn1, block.relu, block.conv2, block.bn2]
    return _residual(main, block.downsample, block.relu)


def _containers() -> dict[type[nn.Module], Callable[[nn.Module], DescribedNetwork]]:
    """Our composite modules, by exact type (a subclass may change ``forward``)."""
    from torchvision.models.resnet import BasicBlock as TorchvisionBasicBlock

    from hssl_cli.models.equivariant_resnet import BasicBlock, ResNet18Body

    return {
        nn.Sequential: lambda m: _sequential(m.children()),
        ResNet18Body: lambda m: _sequential(m.stages.values()),
        BasicBlock: _hssl_basic_block,
        TorchvisionBasicBlock: _torchvision_basic_block,
    }


def _escnn_as_torch(module: nn.Module) -> nn.Module | Iterable[nn.Module]:
    """An escnn layer's torch equivalent (eval mode), or a sequential module's children."""
    from escnn import nn as enn

    if isinstance(module, enn.SequentialModule):
        return module.children()
    if isinstance(module, enn.PointwiseAvgPool2D):
        return nn.AvgPool2d(module.kernel_size, module.stride, module.padding, module.ceil_mode)
    exported = module.export()
    if isinstance(module, enn.R2Conv):  # escnn's export() forgets it
        exported.padding_mode = module.padding_mode
    return exported


def describe(module: nn.Module) -> DescribedNetwork:
    """Layer spec and tensors of ``module``; a layer we cannot rebuild is a user error."""
    if type(module).__module__.startswith("escnn."):
        plain = _escnn_as_torch(module)
        return describe(plain) if isinstance(plain, nn.Module) else _sequential(plain)
    container = _containers().get(type(module))
    if container is not None:
        return container(module)
    for name, layer in PLAIN_LAYERS.items():
        if type(module) is layer.module_class:
            spec = {"layer": name, **layer.describe(module)}
            return DescribedNetwork(spec, dict(module.state_dict()))
    raise HsslUserError(
        f"hssl export cannot rebuild a {type(module).__name__} layer in plain torch; "
        "export supports the cnn, e2resnet18 and resnet18 backbones"
    )


def feature_network(backbone: Backbone) -> nn.Module:
    """The part of ``backbone`` that maps normalised images to its flat map ``[B, C*|G|, H, W]``."""
    from hssl_cli.models.equivariant_cnn import EquivariantCNN
    from hssl_cli.models.equivariant_resnet import EquivariantResNet18, PlainResNet18Twin
    from hssl_cli.models.plain_cnn import PlainCNN
    from hssl_cli.models.resnet import CifarResNet18

    attribute = {
        EquivariantCNN: "layers",
        PlainCNN: "layers",
        EquivariantResNet18: "body",
        PlainResNet18Twin: "body",
        CifarResNet18: "body",
    }.get(type(backbone))
    if attribute is None:
        raise HsslUserError(
            f"hssl export does not know the {type(backbone).__name__} backbone; "
            "export supports the cnn, e2resnet18 and resnet18 backbones"
        )
    if backbone.spatial_pool != "mean" or backbone.scrambled_positions:
        raise HsslUserError(
            f"hssl export does not support the {backbone.group.name} "
            f"{'scale twin' if backbone.spatial_pool != 'mean' else 'scrambled-position twin'} "
            "(its readout differs from the plain network's); export rotation or trivial-group "
            "models of the cnn, e2resnet18 and resnet18 backbones"
        )
    return getattr(backbone, attribute)


def describe_backbone(backbone: Backbone) -> DescribedNetwork:
    """The whole backbone: the network's spec, its tensors under ``network.``, normalisation.

    Switches ``backbone`` to eval mode (escnn's ``export()`` does, layer by layer).
    """
    backbone.eval()
    network = describe(feature_network(backbone))
    tensors = _prefixed("network", network.tensors)
    tensors |= {"input_mean": backbone.input_mean, "input_std": backbone.input_std}
    return DescribedNetwork(network.spec, tensors)
