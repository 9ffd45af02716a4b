"""Checkpoints: safetensors only (no pickle), written atomically, rebuilt from metadata alone.

``checkpoint.safetensors`` holds the weights of the backbone and the objective's
heads plus metadata (resolved recipe, hssl version, epoch, group, feature
shapes); ``train_state.safetensors`` holds what ``--resume`` needs (optimiser,
step, RNG). escnn layers keep extra buffers in eval mode, so weights are always
read in train mode: keys never depend on the mode a model was in.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hssl_cli import __version__
from hssl_cli.config import Recipe
from hssl_cli.errors import HsslUserError, clip, one_line
from hssl_cli.integrity import DIGEST_KEY, check_digest, content_digest, read_tensors
from hssl_cli.io import atomic_path
from hssl_cli.recipe import recipe_from_yaml

# /2 files carry an integrity digest (see hssl_cli.integrity); /1 files, written before,
# have none and are still read, unchecked.
CHECKPOINT_FORMAT = "hssl.checkpoint/2"
TRAIN_STATE_FORMAT = "hssl.train_state/2"
UNCHECKED_FORMATS = {
    CHECKPOINT_FORMAT: "hssl.checkpoint/1",
    TRAIN_STATE_FORMAT: "hssl.train_state/1",
}
MAX_RECIPE_CHARS = 2**20  # a resolved recipe is a few kilobytes
MAX_INPUT_SIDE = 2**16
CUDA_RNG_PREFIX = "rng.cuda."
BACKBONE_PREFIX = "backbone."
OBJECTIVE_PREFIX = "objective."


def atomic_save(tensors: dict[str, torch.Tensor], metadata: dict[str, str], path: Path) -> None:
    """Write a safetensors file atomically (see :func:`hssl_cli.io.atomic_path`), with the
    digest of its content in the metadata so :func:`read_safetensors` can tell a damaged
    file."""
    from safetensors.torch import save_file

    # A copy each: escnn shares basis buffers between layers, and safetensors refuses
    # tensors that share memory.
    tensors = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in tensors.items()}
    metadata = {**metadata, DIGEST_KEY: content_digest(tensors, metadata)}
    with atomic_path(path) as temporary:
        save_file(tensors, str(temporary), metadata=metadata)


def canonical_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """The state dict in train mode (escnn adds cached filters in eval mode)."""
    was_training = module.training
    module.train()
    state = dict(module.state_dict())
    module.train(was_training)
    return state


def read_safetensors(path: Path, expected_format: str) -> tuple[dict[str, torch.Tensor], dict]:
    """Load tensors and metadata (without the digest), turning every kind of bad file into
    a one-line user error: the header length is checked before the header is parsed, and
    the content against its digest before anything is used.

    Files of the older format named in :data:`UNCHECKED_FORMATS` (written before hssl
    stored digests) still load, unchecked; a file of the current format must carry its
    digest, so a bit flip in the digest's key cannot pass the file off as an old one.
    """
    what = "checkpoint" if expected_format == CHECKPOINT_FORMAT else "training state"
    fix = (
        "re-run pretrain or copy the file again"
        if what == "checkpoint"
        else "resume from an intact copy of the run folder or start a new run with another --out"
    )
    if not path.is_file():
        raise HsslUserError(f"{what} not found: {path} (pass the checkpoint.safetensors of a run)")
    tensors, metadata = read_tensors(
        path, what, "pass the checkpoint.safetensors written by 'hssl pretrain'"
    )
    found = metadata.get("format")
    unchecked = UNCHECKED_FORMATS.get(expected_format)
    if found is None or found not in (expected_format, unchecked):
        shown = clip(repr(found), 80)
        raise HsslUserError(
            f"{path} is a safetensors file but not an hssl {what} (format {shown}); "
            "pass a file written by 'hssl pretrain'"
        )
    check_digest(path, tensors, metadata, required=found != unchecked, fix=fix)
    return tensors, metadata


def save_checkpoint(
    path: Path,
    backbone: nn.Module,
    objective: nn.Module,
    recipe: Recipe,
    epoch: int,
    feature_shapes: dict[str, list[int]],
) -> None:
    tensors = {BACKBONE_PREFIX + k: v for k, v in canonical_state(backbone).items()}
    tensors |= {OBJECTIVE_PREFIX + k: v for k, v in canonical_state(objective).items()}
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "hssl_version": __version__,
        "recipe": recipe.to_yaml(),
        "epoch": str(epoch),
        "group": recipe.model.group,
        "feature_shapes": json.dumps(feature_shapes),
    }
    atomic_save(tensors, metadata, path)


@dataclass
class Checkpoint:
    recipe: Recipe
    epoch: int
    metadata: dict[str, str]
    tensors: dict[str, torch.Tensor]

    @property
    def input_shape(self) -> list[int]:
        return json.loads(self.metadata["feature_shapes"])["input"]

    def weights(self, prefix: str) -> dict[str, torch.Tensor]:
        return {k[len(prefix) :]: v for k, v in self.tensors.items() if k.startswith(prefix)}


def read_checkpoint(path: str | Path, overrides: list[str] | None = None) -> Checkpoint:
    """The checkpoint's recipe, epoch and tensors; metadata an intact file cannot hold (a
    file from before digests, or one edited with its digest recomputed) is refused."""
    tensors, metadata = read_safetensors(Path(path), CHECKPOINT_FORMAT)
    try:
        if len(metadata.get("recipe", "")) > MAX_RECIPE_CHARS:
            raise ValueError(f"a recipe of {len(metadata['recipe']):,} characters")
        epoch = int(metadata["epoch"])
        shape = json.loads(metadata["feature_shapes"])["input"]
        if epoch < 0 or not _is_image_shape(shape):
            raise ValueError(f"epoch {epoch}, input shape {clip(repr(shape), 60)}")
        recipe = recipe_from_yaml(metadata["recipe"], overrides)
    except (KeyError, ValueError, TypeError) as err:
        raise HsslUserError(
            f"checkpoint {path} has damaged metadata ({clip(one_line(err), 120)}); re-run pretrain"
        ) from None
    return Checkpoint(recipe, epoch, metadata, tensors)


def _is_image_shape(shape: Any) -> bool:
    """``[channels, height, width]`` of positive integers."""
    return (
        isinstance(shape, list)
        and len(shape) == 3
        and all(type(side) is int and 0 < side <= MAX_INPUT_SIDE for side in shape)
    )


def load_weights(module: nn.Module, weights: dict[str, torch.Tensor], source: str) -> None:
    """Strict load; a mismatch means the file is not from this model's recipe."""
    was_training = module.training
    module.train()
    try:
        module.load_state_dict(weights, strict=True)
    except RuntimeError as err:
        first = str(err).splitlines()[1].strip() if "\n" in str(err) else str(err)
        raise HsslUserError(
            f"{source} does not fit the model its recipe describes ({first[:120]}); "
            "was the checkpoint edited or the model section overridden?"
        ) from None
    module.train(was_training)


def load_backbone(checkpoint: Checkpoint, source: str) -> nn.Module:
    """Rebuild the backbone from the checkpoint's recipe alone, in eval mode."""
    from hssl_cli.models import build_backbone

    backbone = build_backbone(checkpoint.recipe.model, checkpoint.input_shape[0], initialize=False)
    load_weights(backbone, checkpoint.weights(BACKBONE_PREFIX), source)
    return backbone.eval()


# ------------------------------------------------------------------ training state


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], str]:
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for index, values in state["state"].items():
        for name, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optimizer.{index}.{name}"] = value
            elif value is not None:
                scalars.setdefault(str(index), {})[name] = value
    layout = {"param_groups": state["param_groups"], "scalars": scalars}
    return tensors, json.dumps(layout)


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], layout: str) -> dict[str, Any]:
    parsed = json.loads(layout)
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        if key.startswith("optimizer."):
            _, index, name = key.split(".", 2)
            state.setdefault(int(index), {})[name] = value
    for index, values in parsed["scalars"].items():
        state.setdefault(int(index), {}).update(values)
    return {"state": state, "param_groups": parsed["param_groups"]}


def save_train_state(
    path: Path,
    optimizer: torch.optim.Optimizer,
    epoch: int,
    step: int,
    extra_tensors: dict[str, torch.Tensor] | None = None,
    extra_metadata: dict[str, str] | None = None,
) -> None:
    """Optimiser, RNG, epoch and step, plus what the trainer adds (weights, position)."""
    tensors, layout = _flatten_optimizer(optimizer.state_dict())
    tensors |= extra_tensors or {}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        for index, rng in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"{CUDA_RNG_PREFIX}{index}"] = rng
    metadata = {
        "format": TRAIN_STATE_FORMAT,
        "hssl_version": __version__,
        "epoch": str(epoch),
        "step": str(step),
        "optimizer": layout,
    } | (extra_metadata or {})
    atomic_save(tensors, metadata, path)


def cuda_rng_keys(keys: Iterable[str]) -> list[str]:
    """The ``rng.cuda.N`` keys in device order: by N as a number (``rng.cuda.10`` after 9)."""

    def index(key: str) -> str:
        return key[len(CUDA_RNG_PREFIX) :]

    cuda = [key for key in keys if key.startswith(CUDA_RNG_PREFIX) and index(key).isdigit()]
    return sorted(cuda, key=lambda key: int(index(key)))


def load_train_state(path: Path, optimizer: torch.optim.Optimizer) -> tuple[int, int]:
    """Restore optimiser and RNG; return (finished epoch, global step)."""
    tensors, metadata = read_safetensors(path, TRAIN_STATE_FORMAT)
    return restore_train_state(tensors, metadata, optimizer, path)


def restore_train_state(
    tensors: dict[str, torch.Tensor], metadata: dict, optimizer: torch.optim.Optimizer, path: Path
) -> tuple[int, int]:
    """Restore optimiser and RNG from a read training state; return (epoch, global step)."""
    try:
        optimizer.load_state_dict(_unflatten_optimizer(tensors, metadata["optimizer"]))
    except ValueError as err:  # another number or size of parameter groups
        raise HsslUserError(
            f"{path} holds the optimiser of another parameter layout ({err}); "
            "start a new run with another --out"
        ) from None
    torch.set_rng_state(tensors["rng.cpu"])
    cuda_states = [tensors[key] for key in cuda_rng_keys(tensors)]
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])
    return int(metadata["epoch"]), int(metadata["step"])
