"""A run's state on disk: whether ``--resume`` may continue it, restoring it, and saving it.

``train_state.safetensors`` alone is the resume point: weights, optimiser, RNG and the
position (finished epochs, global step, batches done in the current epoch, and the
epoch's metric sums so far). ``checkpoint.safetensors`` is the run's product, the weights
after the last finished epoch. At an epoch's end the trainer writes ``metrics.jsonl``,
then the state, then the checkpoint, each atomically; a kill between any two leaves a
resumable folder:

- after the metrics line only: ``--resume`` drops the line and retrains the epoch;
- after the state only: the checkpoint is one epoch behind, and ``--resume`` rewrites it
  from the state (see :func:`checkpoint_is_current`).

Mid-epoch saves (``train.checkpoint_every_steps``, stop signals) write the state only.
A state written by an older hssl, without the weights, resumes from the checkpoint of the
same epoch, as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from hssl_cli import safe_yaml
from hssl_cli.checkpoint import (
    BACKBONE_PREFIX,
    CHECKPOINT_FORMAT,
    OBJECTIVE_PREFIX,
    TRAIN_STATE_FORMAT,
    canonical_state,
    load_weights,
    read_checkpoint,
    read_safetensors,
    restore_train_state,
    save_train_state,
)
from hssl_cli.config import Recipe
from hssl_cli.errors import HsslUserError
from hssl_cli.run_files import CHECKPOINT_NAME, RECIPE_NAME, TRAIN_STATE_NAME

# Recipe keys a resumed run may change: how long it trains, what it logs, how often it saves.
RESUMABLE_CHANGES = ("epochs", "log", "checkpoint_every_steps")
METER_PREFIX = "meter."


@dataclass
class Position:
    """Where a run stands: ``epoch`` finished epochs, ``step`` global steps, and
    ``step_in_epoch`` batches of epoch ``epoch + 1`` done (0 at an epoch's end), with that
    epoch's metric sums so far (:class:`~hssl_cli.training.metrics.EpochMeter`)."""

    epoch: int = 0
    step: int = 0
    step_in_epoch: int = 0
    meter_sums: dict[str, torch.Tensor] = field(default_factory=dict)


def check_resumable(out_dir: Path, recipe: Recipe, resume: bool) -> None:
    """Refuse to overwrite a run without ``--resume``, to resume a checkpoint without its
    training state, and to resume with another recipe (see :data:`RESUMABLE_CHANGES`)."""
    has_checkpoint = (out_dir / CHECKPOINT_NAME).exists()
    has_state = (out_dir / TRAIN_STATE_NAME).exists()
    if (has_checkpoint or has_state) and not resume:
        raise HsslUserError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    if resume and has_checkpoint and not has_state:
        raise HsslUserError(
            f"--resume: {out_dir} has {CHECKPOINT_NAME} but no {TRAIN_STATE_NAME} (optimiser, "
            "RNG and position), so the run cannot continue; use the checkpoint as it is "
            "(linear-probe, export) or start a new run with another --out"
        )
    if resume and has_state and (out_dir / RECIPE_NAME).exists():
        stored = _stored_recipe(out_dir / RECIPE_NAME)
        current = recipe.to_dict()
        for section in (stored, current):
            train = section.get("train")
            for key in RESUMABLE_CHANGES:
                if isinstance(train, dict):
                    train.pop(key, None)
        if stored != current:
            changed = sorted(k for k in current if current.get(k) != stored.get(k))
            raise HsslUserError(
                f"--resume: the recipe differs from the run in {out_dir} (sections: "
                f"{', '.join(changed)}); only train.epochs, train.log and "
                "train.checkpoint_every_steps may change when resuming"
            )


def _stored_recipe(path: Path) -> dict:
    """The run's recipe.yaml, read as strictly as a user's recipe (no aliases to expand)."""
    from hssl_cli.recipe import MAX_RECIPE_BYTES

    fix = (
        "restore it from the recipe the run was started with, or start a new run with another --out"
    )
    try:
        stored = safe_yaml.load_file(path, "the run's recipe", MAX_RECIPE_BYTES)
    except HsslUserError as err:
        raise HsslUserError(f"--resume: {err}; or {fix}") from None
    if not isinstance(stored, dict):
        raise HsslUserError(f"--resume: {path} is damaged (not a mapping); {fix}")
    return stored


def _damaged_state(path: Path, reason: str) -> HsslUserError:
    return HsslUserError(
        f"--resume: {path} is damaged ({reason}); start a new run with another --out "
        f"({CHECKPOINT_NAME}, if present, still holds the last finished epoch)"
    )


def restore_state(
    out_dir: Path, backbone: nn.Module, objective: nn.Module, optimizer: torch.optim.Optimizer
) -> Position:
    """Load the run's weights, optimiser and RNG from its training state; return where it
    stands."""
    state_path = out_dir / TRAIN_STATE_NAME
    tensors, metadata = read_safetensors(state_path, TRAIN_STATE_FORMAT)
    try:
        epoch, step = restore_train_state(tensors, metadata, optimizer, state_path)
        step_in_epoch = int(metadata.get("step_in_epoch", "0"))
    except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
        raise _damaged_state(state_path, type(err).__name__) from None
    if min(epoch, step, step_in_epoch) < 0:
        raise _damaged_state(state_path, "negative position")
    if any(key.startswith(BACKBONE_PREFIX) for key in tensors):
        load_weights(backbone, _weights(tensors, BACKBONE_PREFIX), str(state_path))
        load_weights(objective, _weights(tensors, OBJECTIVE_PREFIX), str(state_path))
    else:  # written before the state held the weights: they are the checkpoint's
        checkpoint_path = out_dir / CHECKPOINT_NAME
        checkpoint = read_checkpoint(checkpoint_path)
        if epoch != checkpoint.epoch:
            raise HsslUserError(
                f"{state_path} (epoch {epoch}) does not match {CHECKPOINT_NAME} "
                f"(epoch {checkpoint.epoch}); start a new run with another --out"
            )
        load_weights(backbone, checkpoint.weights(BACKBONE_PREFIX), str(checkpoint_path))
        load_weights(objective, checkpoint.weights(OBJECTIVE_PREFIX), str(checkpoint_path))
    sums = {
        key[len(METER_PREFIX) :]: value
        for key, value in tensors.items()
        if key.startswith(METER_PREFIX)
    }
    return Position(epoch, step, step_in_epoch, sums)


def _weights(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {key[len(prefix) :]: value for key, value in tensors.items() if key.startswith(prefix)}


def save_state(
    out_dir: Path,
    backbone: nn.Module,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    position: Position,
) -> None:
    """Write the training state: everything :func:`restore_state` needs to continue."""
    tensors = {BACKBONE_PREFIX + k: v for k, v in canonical_state(backbone).items()}
    tensors |= {OBJECTIVE_PREFIX + k: v for k, v in canonical_state(objective).items()}
    tensors |= {METER_PREFIX + name: total for name, total in position.meter_sums.items()}
    save_train_state(
        out_dir / TRAIN_STATE_NAME,
        optimizer,
        position.epoch,
        position.step,
        extra_tensors=tensors,
        extra_metadata={"step_in_epoch": str(position.step_in_epoch)},
    )


def checkpoint_is_current(out_dir: Path, epoch: int) -> bool:
    """Whether ``checkpoint.safetensors`` is readable and holds ``epoch`` finished epochs
    (a kill between the state and the checkpoint leaves it one behind)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(out_dir / CHECKPOINT_NAME), "pt") as handle:
            metadata = dict(handle.metadata() or {})
    except (SafetensorError, OSError, ValueError):
        return False
    return metadata.get("format") == CHECKPOINT_FORMAT and metadata.get("epoch") == str(epoch)
