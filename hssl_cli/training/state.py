"""A run's state on disk: whether ``--resume`` may continue it, restoring it, and saving
the checkpoint and training state of each epoch as a matching pair."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import yaml
from torch import nn

from hssl_cli.checkpoint import (
    BACKBONE_PREFIX,
    OBJECTIVE_PREFIX,
    load_train_state,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    save_train_state,
)
from hssl_cli.config import Recipe
from hssl_cli.errors import HsslUserError
from hssl_cli.run_files import CHECKPOINT_NAME, RECIPE_NAME, TRAIN_STATE_NAME


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C until the block ends, so checkpoint and training state stay a matching pair."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def check_resumable(out_dir: Path, recipe: Recipe, resume: bool) -> None:
    """Refuse to overwrite a run without ``--resume``, and to resume with another recipe
    (only ``train.epochs`` and ``train.log`` may change)."""
    has_run = (out_dir / CHECKPOINT_NAME).exists() or (out_dir / TRAIN_STATE_NAME).exists()
    if has_run and not resume:
        raise HsslUserError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    if resume and has_run and (out_dir / RECIPE_NAME).exists():
        stored = yaml.safe_load((out_dir / RECIPE_NAME).read_text())
        current = recipe.to_dict()
        for section in (stored, current):
            for key in ("epochs", "log"):
                section.get("train", {}).pop(key, None)
        if stored != current:
            changed = sorted(k for k in current if current.get(k) != stored.get(k))
            raise HsslUserError(
                f"--resume: the recipe differs from the run in {out_dir} (sections: "
                f"{', '.join(changed)}); only train.epochs and train.log may change when resuming"
            )


def restore_state(
    out_dir: Path, backbone: nn.Module, objective: nn.Module, optimizer: torch.optim.Optimizer
) -> tuple[int, int]:
    """Load the run's weights, optimiser and RNG; return (finished epochs, global step)."""
    checkpoint_path, state_path = out_dir / CHECKPOINT_NAME, out_dir / TRAIN_STATE_NAME
    checkpoint = read_checkpoint(checkpoint_path)
    load_weights(backbone, checkpoint.weights(BACKBONE_PREFIX), str(checkpoint_path))
    load_weights(objective, checkpoint.weights(OBJECTIVE_PREFIX), str(checkpoint_path))
    epoch, step = load_train_state(state_path, optimizer)
    if epoch != checkpoint.epoch:
        raise HsslUserError(
            f"{state_path} (epoch {epoch}) does not match {CHECKPOINT_NAME} "
            f"(epoch {checkpoint.epoch}); start a new run with another --out"
        )
    return epoch, step


def save_state(
    out_dir: Path,
    backbone: nn.Module,
    objective: nn.Module,
    optimizer: torch.optim.Optimizer,
    recipe: Recipe,
    epoch: int,
    step: int,
    feature_shapes: dict[str, list[int]],
) -> None:
    """The checkpoint after ``epoch`` finished epochs, then the training state to resume it."""
    save_checkpoint(out_dir / CHECKPOINT_NAME, backbone, objective, recipe, epoch, feature_shapes)
    save_train_state(out_dir / TRAIN_STATE_NAME, optimizer, epoch, step)
