"""The training engine: recipe in, checkpoints and metrics out.

Method-agnostic: the objective turns a batch into named scalars; the engine
handles devices, seeds, the optimiser and schedule, progress, metrics,
NaN guards, atomic per-epoch checkpoints and resuming.
"""

from __future__ import annotations

import json
import math
import random
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml

from hssl_cli.checkpoint import (
    BACKBONE_PREFIX,
    OBJECTIVE_PREFIX,
    load_train_state,
    load_weights,
    read_checkpoint,
    save_checkpoint,
    save_train_state,
)
from hssl_cli.errors import HsslUserError, TrainingDiverged
from hssl_cli.progress import progress_bar
from hssl_cli.recipe import OptimConfig, Recipe

CHECKPOINT_NAME = "checkpoint.safetensors"
TRAIN_STATE_NAME = "train_state.safetensors"
METRICS_NAME = "metrics.jsonl"
RECIPE_NAME = "recipe.yaml"


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


def make_optimizer(
    config: OptimConfig, parameters: list[torch.nn.Parameter]
) -> torch.optim.Optimizer:
    if config.name == "sgd":
        return torch.optim.SGD(
            parameters, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    return torch.optim.AdamW(parameters, lr=config.lr, weight_decay=config.weight_decay)


def learning_rate(config: OptimConfig, step: int, steps_per_epoch: int, epochs: int) -> float:
    """Linear warm-up, then cosine decay to ``min_lr_ratio * lr``, per step."""
    warmup = config.warmup_epochs * steps_per_epoch
    total = max(1, epochs * steps_per_epoch)
    if step < warmup:
        return config.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1.0, total - warmup))
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


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


@dataclass
class TrainResult:
    out_dir: Path
    epochs_done: int
    last_loss: float


def _check_resumable(out_dir: Path, recipe: Recipe, resume: bool) -> None:
    has_run = (out_dir / CHECKPOINT_NAME).exists() or (out_dir / TRAIN_STATE_NAME).exists()
    if has_run and not resume:
        raise HsslUserError(
            f"{out_dir} already holds a run; pass --resume to continue it or choose another --out"
        )
    if resume and has_run and (out_dir / RECIPE_NAME).exists():
        stored = yaml.safe_load((out_dir / RECIPE_NAME).read_text())
        current = recipe.to_dict()
        for section in (stored, current):
            section.get("train", {}).pop("epochs", None)
        if stored != current:
            changed = sorted(k for k in current if current.get(k) != stored.get(k))
            raise HsslUserError(
                f"--resume: the recipe differs from the run in {out_dir} (sections: "
                f"{', '.join(changed)}); only train.epochs may change when resuming"
            )


def pretrain(
    recipe: Recipe,
    out_dir: Path,
    device: torch.device,
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    from hssl_cli.data import channel_stats, load_images
    from hssl_cli.models import build_backbone
    from hssl_cli.objectives import build_objective

    _check_resumable(out_dir, recipe, resume)
    seed_everything(recipe.seed)
    train_set = load_images(recipe.data, "train")
    batch_size = recipe.train.batch_size
    steps_per_epoch = len(train_set.labels) // batch_size
    if steps_per_epoch == 0:
        raise HsslUserError(
            f"train.batch_size={batch_size} exceeds the {len(train_set.labels)} training images; "
            "lower train.batch_size"
        )
    in_channels, height, width = train_set.images.shape[1:]
    state_path = out_dir / TRAIN_STATE_NAME
    resuming = resume and state_path.exists()
    backbone = build_backbone(recipe.model, in_channels, initialize=not resuming)
    backbone.set_normalization(*channel_stats(train_set))
    objective = build_objective(recipe.method, backbone)
    backbone.to(device)
    objective.to(device)
    parameters = [p for p in [*backbone.parameters(), *objective.parameters()] if p.requires_grad]
    optimizer = make_optimizer(recipe.optim, parameters)

    start_epoch, step = 0, 0
    if resuming:
        checkpoint = read_checkpoint(out_dir / CHECKPOINT_NAME)
        load_weights(backbone, checkpoint.weights(BACKBONE_PREFIX), str(out_dir / CHECKPOINT_NAME))
        load_weights(
            objective, checkpoint.weights(OBJECTIVE_PREFIX), str(out_dir / CHECKPOINT_NAME)
        )
        start_epoch, step = load_train_state(state_path, optimizer)
        if start_epoch != checkpoint.epoch:
            raise HsslUserError(
                f"{state_path} (epoch {start_epoch}) does not match {CHECKPOINT_NAME} "
                f"(epoch {checkpoint.epoch}); start a new run with another --out"
            )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / RECIPE_NAME).write_text(recipe.to_yaml())

    with torch.no_grad():
        probe_images = train_set.images[:2].to(device).float() / 255
        backbone.eval()
        output = backbone(probe_images)
        backbone.train()
    feature_shapes = {
        "input": [in_channels, height, width],
        "feature_map": list(output.feature_map.shape[1:]),
        "fibers": list(output.fibers.shape[1:]),
        "invariant": list(output.invariant.shape[1:]),
    }

    images_on_device = train_set.images.to(device)
    labels_on_device = train_set.labels.to(device)
    total_steps = recipe.train.epochs * steps_per_epoch
    epochs = recipe.train.epochs
    last_loss = float("nan")
    with progress_bar(quiet) as progress:
        task = progress.add_task(
            "pretrain", total=(epochs - start_epoch) * steps_per_epoch, status=""
        )
        for epoch in range(start_epoch, epochs):
            backbone.train()
            objective.train()
            order = torch.randperm(
                len(train_set.labels),
                generator=torch.Generator().manual_seed(recipe.seed * 10007 + epoch),
            ).to(device)
            sums: dict[str, float] = {}
            started = time.perf_counter()
            for batch_index in range(steps_per_epoch):
                rate = learning_rate(recipe.optim, step, steps_per_epoch, epochs)
                for group in optimizer.param_groups:
                    group["lr"] = rate
                indices = order[batch_index * batch_size : (batch_index + 1) * batch_size]
                images = images_on_device[indices].float().div_(255)
                values = objective(backbone, images, labels_on_device[indices])
                loss = values["loss"]
                if not torch.isfinite(loss):
                    raise TrainingDiverged(
                        f"loss became {loss.item()} at epoch {epoch + 1}, step {batch_index + 1}; "
                        f"the last good checkpoint ({epoch} epochs) is intact in {out_dir}. "
                        "Lower optim.lr or set train.grad_clip"
                    )
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if recipe.train.grad_clip:
                    torch.nn.utils.clip_grad_norm_(parameters, recipe.train.grad_clip)
                optimizer.step()
                step += 1
                objective.after_step(backbone, step, total_steps)
                for name, value in values.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                seen = (batch_index + 1) * batch_size
                speed = seen / max(1e-9, time.perf_counter() - started)
                progress.update(
                    task,
                    advance=1,
                    description=f"epoch {epoch + 1}/{epochs}",
                    status=f"loss {float(loss.detach()):.4f}  {speed:,.0f} img/s",
                )
            seconds = time.perf_counter() - started
            means = {name: total / steps_per_epoch for name, total in sums.items()}
            last_loss = means["loss"]
            record = {
                "epoch": epoch + 1,
                "step": step,
                "lr": rate,
                "epoch_seconds": round(seconds, 4),
                "images_per_second": round(steps_per_epoch * batch_size / seconds, 2),
                **means,
            }
            with deferred_interrupt():
                save_checkpoint(
                    out_dir / CHECKPOINT_NAME,
                    backbone,
                    objective,
                    recipe,
                    epoch + 1,
                    feature_shapes,
                )
                save_train_state(state_path, optimizer, epoch + 1, step)
                with open(out_dir / METRICS_NAME, "a") as metrics:
                    metrics.write(json.dumps(record) + "\n")
            if not progress.disable:
                progress.console.log(
                    f"epoch {epoch + 1}/{epochs}  loss {last_loss:.4f}  "
                    f"{record['images_per_second']:,.0f} img/s  {seconds:.1f}s"
                )
    if epochs == 0 and not resuming:
        save_checkpoint(out_dir / CHECKPOINT_NAME, backbone, objective, recipe, 0, feature_shapes)
    return TrainResult(out_dir, epochs, last_loss)
