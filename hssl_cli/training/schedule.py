"""The optimiser and its learning-rate schedule.

Weight decay skips normalisation layers and biases (as solo-learn, lightly and timm do)
unless ``optim.decay_norm_and_bias`` is true. The rule goes by the module that owns a
parameter, not by its shape: escnn's ``R2Conv`` stores its filters as a 1-D vector of
basis coefficients, so the common "no decay for ndim <= 1" would exempt every
equivariant convolution.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable

import torch
from torch import nn

from hssl_cli.config import OptimConfig


def learning_rate(config: OptimConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``, per step."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = max(1, epochs * steps_per_epoch)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def norm_layer_types() -> tuple[type[nn.Module], ...]:
    """torch's batch, instance, layer, group and RMS norms and every escnn batch norm."""
    types: list[type[nn.Module]] = [
        nn.modules.batchnorm._NormBase,  # BatchNorm*, SyncBatchNorm, InstanceNorm*
        nn.LayerNorm,
        nn.GroupNorm,
        nn.LocalResponseNorm,
    ]
    if hasattr(nn, "RMSNorm"):
        types.append(nn.RMSNorm)
    # Only when escnn is loaded: without it no module can be one of its layers, and a plain
    # torch backbone need not pay for importing it.
    escnn_norms = sys.modules.get("escnn.nn.modules.batchnormalization")
    if escnn_norms is not None:
        types += [getattr(escnn_norms, name) for name in escnn_norms.__all__]
    return tuple(types)


def trainable_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    """Parameters that take gradients, each once, in ``parameters()`` order."""
    seen: set[int] = set()
    parameters = []
    for module in modules:
        for parameter in module.parameters():
            if parameter.requires_grad and id(parameter) not in seen:
                seen.add(id(parameter))
                parameters.append(parameter)
    return parameters


def exempt_from_decay(modules: Iterable[nn.Module]) -> set[int]:
    """The ids of parameters that get no weight decay: every parameter of a norm layer
    (or of a module inside one) and every parameter whose name ends in ``bias``."""
    norm_types = norm_layer_types()
    exempt: set[int] = set()

    def visit(module: nn.Module, inside_norm: bool) -> None:
        inside_norm = inside_norm or isinstance(module, norm_types)
        for name, parameter in module.named_parameters(recurse=False):
            if inside_norm or name.endswith("bias"):
                exempt.add(id(parameter))
        for child in module.children():
            visit(child, inside_norm)

    for module in modules:
        visit(module, False)
    return exempt


def parameter_groups(config: OptimConfig, modules: Iterable[nn.Module]) -> list[dict[str, object]]:
    """``[decay, no decay]`` parameter groups (an empty one left out); one group with every
    trainable parameter when ``config.decay_norm_and_bias`` is true."""
    modules = list(modules)
    parameters = trainable_parameters(modules)
    if config.decay_norm_and_bias:
        return [{"params": parameters}]
    exempt = exempt_from_decay(modules)
    decay = [p for p in parameters if id(p) not in exempt]
    no_decay = [p for p in parameters if id(p) in exempt]
    groups: list[dict[str, object]] = []
    if decay:
        groups.append({"params": decay})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return groups


def make_optimizer(
    config: OptimConfig, parameters: nn.Module | Iterable[nn.Module] | Iterable[nn.Parameter]
) -> torch.optim.Optimizer:
    """The recipe's optimiser over modules (weight decay grouped as above) or parameters.

    A bare list of parameters cannot say which layer owns each one: it becomes one group
    that decays every parameter, as ``decay_norm_and_bias: true`` does. The trainer passes
    the backbone and the objective.
    """
    items = [parameters] if isinstance(parameters, nn.Module) else list(parameters)
    if items and all(isinstance(item, nn.Module) for item in items):
        groups = parameter_groups(config, items)
    else:
        groups = [{"params": items}]
    if config.name == "sgd":
        return torch.optim.SGD(
            groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(groups, lr=config.lr, weight_decay=config.weight_decay)
