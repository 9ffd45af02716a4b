"""The training loop: recipe in, checkpoints and metrics out.

Method-agnostic: the objective turns a batch into named scalars; the loop handles
devices, seeds, the schedule, progress, NaN guards and one atomic checkpoint per epoch.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hssl_cli.checkpoint import save_checkpoint
from hssl_cli.config import Recipe
from hssl_cli.errors import HsslUserError, TrainingDiverged
from hssl_cli.io import atomic_write_text
from hssl_cli.progress import progress_bar
from hssl_cli.run_files import CHECKPOINT_NAME, RECIPE_NAME, TRAIN_STATE_NAME
from hssl_cli.training.metrics import EpochMeter, append_metrics, epoch_line
from hssl_cli.training.schedule import learning_rate, make_optimizer, trainable_parameters
from hssl_cli.training.state import (
    check_resumable,
    deferred_interrupt,
    restore_state,
    save_state,
)

if TYPE_CHECKING:
    from hssl_cli.data.image_set import ImageSet


def select_device(choice: str) -> torch.device:
    if choice == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise HsslUserError("--device cuda asked but no CUDA device is visible; use --device cpu")
    if choice not in ("cpu", "cuda"):
        raise HsslUserError(f"unknown device {choice!r}; use auto, cpu or cuda")
    return torch.device(choice)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class TrainResult:
    epochs_done: int
    last_loss: float


def steps_per_epoch(images: int, batch_size: int) -> int:
    """Full batches only; a data set smaller than one batch is a user error."""
    steps = images // batch_size
    if steps == 0:
        raise HsslUserError(
            f"train.batch_size={batch_size} exceeds the {images} training images; "
            "lower train.batch_size"
        )
    return steps


def feature_shapes(backbone: nn.Module, images: torch.Tensor, device: torch.device) -> dict:
    """The shapes of the backbone's outputs for one image, stored in the checkpoint."""
    with torch.no_grad():
        backbone.eval()
        output = backbone(images[:2].to(device).float() / 255)
        backbone.train()
    return {
        "input": list(images.shape[1:]),
        "feature_map": list(output.feature_map.shape[1:]),
        "fibers": list(output.fibers.shape[1:]),
        "invariant": list(output.invariant.shape[1:]),
    }


@dataclass
class Trainee:
    """What a run trains: the backbone, the objective (with its heads) and their optimiser."""

    backbone: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    parameters: list[nn.Parameter]  # the trainable ones, for gradient clipping


def build_trainee(
    recipe: Recipe, train_set: ImageSet, device: torch.device, initialize: bool
) -> Trainee:
    """Backbone and objective on ``device`` with their optimiser; ``initialize=False`` skips
    the (slow) escnn initialisation of weights a resumed run loads anyway."""
    from hssl_cli.data import channel_stats
    from hssl_cli.models import build_backbone
    from hssl_cli.objectives import build_objective

    backbone = build_backbone(recipe.model, train_set.images.shape[1], initialize=initialize)
    backbone.set_normalization(*channel_stats(train_set))
    objective = build_objective(recipe.method, backbone)
    backbone.to(device)
    objective.to(device)
    modules = [backbone, objective]
    optimizer = make_optimizer(recipe.optim, modules)
    return Trainee(backbone, objective, optimizer, trainable_parameters(modules))


def train_epoch(
    trainee: Trainee,
    recipe: Recipe,
    images: torch.Tensor,
    labels: torch.Tensor,
    epoch: int,
    step: int,
    report: Callable[[str], None],
) -> tuple[dict[str, Any], int]:
    """One pass over the shuffled data in full batches; return the epoch's metrics record
    and the new global step. ``report`` gets the progress text after each step."""
    backbone, objective, optimizer = trainee.backbone, trainee.objective, trainee.optimizer
    batch_size, epochs = recipe.train.batch_size, recipe.train.epochs
    steps = steps_per_epoch(len(labels), batch_size)
    backbone.train()
    objective.train()
    order = torch.randperm(
        len(labels), generator=torch.Generator().manual_seed(recipe.seed * 10007 + epoch)
    ).to(images.device)
    meter = EpochMeter(batch_size)
    rate = float("nan")
    for batch_index in range(steps):
        rate = learning_rate(recipe.optim, step, steps, epochs)
        for group in optimizer.param_groups:
            group["lr"] = rate
        indices = order[batch_index * batch_size : (batch_index + 1) * batch_size]
        values = objective(backbone, images[indices].float().div_(255), labels[indices])
        loss = values["loss"]
        if not torch.isfinite(loss):
            raise TrainingDiverged(
                f"loss became {loss.item()} at epoch {epoch + 1}, step {batch_index + 1}"
            )
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if recipe.train.grad_clip:
            torch.nn.utils.clip_grad_norm_(trainee.parameters, recipe.train.grad_clip)
        optimizer.step()
        step += 1
        objective.after_step(backbone, step, epochs * steps)
        meter.add(values)
        report(meter.status(loss))
    return meter.record(epoch + 1, step, rate), step


def pretrain(
    recipe: Recipe,
    out_dir: Path,
    device: torch.device,
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Train ``recipe`` into ``out_dir``: a checkpoint, the training state and a metrics
    line per epoch; with ``resume``, continue the run there from its last finished epoch."""
    from hssl_cli.data import load_images

    check_resumable(out_dir, recipe, resume)
    seed_everything(recipe.seed)
    train_set = load_images(recipe.data, "train")
    epochs = recipe.train.epochs
    steps = steps_per_epoch(len(train_set.labels), recipe.train.batch_size)
    resuming = resume and (out_dir / TRAIN_STATE_NAME).exists()
    trainee = build_trainee(recipe, train_set, device, initialize=not resuming)
    start_epoch, step = 0, 0
    if resuming:
        start_epoch, step = restore_state(
            out_dir, trainee.backbone, trainee.objective, trainee.optimizer
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / RECIPE_NAME, recipe.to_yaml())
    shapes = feature_shapes(trainee.backbone, train_set.images, device)

    images, labels = train_set.images.to(device), train_set.labels.to(device)
    last_loss = float("nan")
    with progress_bar(quiet) as progress:
        task = progress.add_task("pretrain", total=(epochs - start_epoch) * steps, status="")
        for epoch in range(start_epoch, epochs):
            description = f"epoch {epoch + 1}/{epochs}"

            def report(status: str, description: str = description) -> None:
                progress.update(task, advance=1, description=description, status=status)

            try:
                record, step = train_epoch(trainee, recipe, images, labels, epoch, step, report)
            except TrainingDiverged as err:
                raise TrainingDiverged(
                    f"{err}; the last good checkpoint ({epoch} epochs) is intact in {out_dir}. "
                    "Lower optim.lr or set train.grad_clip"
                ) from None
            last_loss = record["loss"]
            with deferred_interrupt():
                save_state(
                    out_dir,
                    trainee.backbone,
                    trainee.objective,
                    trainee.optimizer,
                    recipe,
                    epoch + 1,
                    step,
                    shapes,
                )
                append_metrics(out_dir, record)
            if not progress.disable:
                progress.console.log(epoch_line(record, epochs))
    if epochs == 0 and not resuming:
        save_checkpoint(
            out_dir / CHECKPOINT_NAME, trainee.backbone, trainee.objective, recipe, 0, shapes
        )
    return TrainResult(epochs, last_loss)
