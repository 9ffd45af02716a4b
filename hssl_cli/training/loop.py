"""The training loop: recipe in, checkpoints and metrics out.

Method-agnostic: the objective turns a batch into named scalars; the loop handles
devices, seeds, the schedule, precision, progress, NaN guards and one atomic checkpoint
per epoch. With several processes (torchrun; see :mod:`hssl_cli.distributed`) each rank
trains on its rows of every global batch, and rank 0 alone writes files and progress.

The step loop never waits for the device: metrics are summed there, and the host reads
them (and the NaN flag) at most every :data:`STATUS_SECONDS` and at the end of each epoch;
per-step TensorBoard scalars (:mod:`hssl_cli.training.run_log`) are copied at those reads.
"""

from __future__ import annotations

import errno
import random
import signal
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from hssl_cli import distributed
from hssl_cli.checkpoint import save_checkpoint
from hssl_cli.config import Recipe
from hssl_cli.distributed import World
from hssl_cli.errors import HsslUserError, TrainingDiverged
from hssl_cli.io import atomic_write_text, remove_temporaries
from hssl_cli.progress import progress_bar
from hssl_cli.run_files import CHECKPOINT_NAME, RECIPE_NAME, TRAIN_STATE_NAME
from hssl_cli.run_lock import hold_run_folder
from hssl_cli.runtime import autocast, check_precision, memory_format
from hssl_cli.training.metrics import EpochMeter, epoch_line, keep_metrics_through
from hssl_cli.training.parallel import training_step
from hssl_cli.training.run_log import RunLog, check_log_kinds
from hssl_cli.training.schedule import learning_rate, make_optimizer, trainable_parameters
from hssl_cli.training.state import (
    Position,
    check_resumable,
    checkpoint_is_current,
    restore_state,
    save_state,
)
from hssl_cli.training.stop import StopRequest, TrainingStopped, stop_signals

if TYPE_CHECKING:
    from hssl_cli.data.batches import BatchSource
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


STATUS_SECONDS = 2.0  # how often the step loop reads the device: progress text, NaN check
# With several processes the ranks agree on a stop signal every this many steps (one tiny
# all-reduce), so that all of them stop after the same step.
STOP_VOTE_STEPS = 8


@dataclass
class MidEpochSaves:
    """When and how a step saves the position within its epoch: every ``every`` steps
    (``train.checkpoint_every_steps``; None: never) and, when ``every`` is set, on a stop
    signal. ``save`` writes the training state (on rank 0; a no-op on the others)."""

    request: StopRequest
    every: int | None
    save: Callable[[int, int, int, EpochMeter], None]  # (epoch, step in it, global step, meter)


@dataclass
class Trainee:
    """What a run trains: the backbone, the objective (with its heads) and their optimiser."""

    backbone: nn.Module
    objective: nn.Module
    optimizer: torch.optim.Optimizer
    parameters: list[nn.Parameter]  # the trainable ones, for gradient clipping
    # What a step calls: objective(backbone, ...) as one module, under DDP with several ranks.
    step: nn.Module
    # fp16's loss scaling; a disabled scaler (every other precision) passes calls through.
    scaler: torch.amp.GradScaler


def build_trainee(
    recipe: Recipe,
    train_set: ImageSet | BatchSource,
    device: torch.device,
    initialize: bool,
    here: World = distributed.SINGLE,
) -> Trainee:
    """Backbone and objective on ``device`` with their optimiser; ``initialize=False`` skips
    the (slow) escnn initialisation of weights a resumed run loads anyway.

    ``train.channels_last`` stores 4-D weights (and, in :func:`train_epoch`, batches)
    channels-last; escnn's layers take any layout. ``train.precision`` is checked against
    the device here, before any work.
    """
    from hssl_cli.data import channel_stats
    from hssl_cli.models import build_backbone
    from hssl_cli.objectives import build_objective

    check_precision(device, recipe.train.precision, "train.precision")
    backbone = build_backbone(recipe.model, train_set.image_shape[0], initialize=initialize)
    backbone.set_normalization(*channel_stats(train_set))
    objective = build_objective(recipe.method, backbone)
    layout = memory_format(recipe.train.channels_last)
    backbone.to(device, memory_format=layout)
    objective.to(device, memory_format=layout)
    modules = [backbone, objective]
    optimizer = make_optimizer(recipe.optim, modules)
    scaler = torch.amp.GradScaler(device.type, enabled=recipe.train.precision == "fp16")
    step = training_step(backbone, objective, recipe.train, here, device)
    return Trainee(backbone, objective, optimizer, trainable_parameters(modules), step, scaler)


def train_step(
    trainee: Trainee, recipe: Recipe, images: torch.Tensor, labels: torch.Tensor
) -> dict[str, torch.Tensor]:
    """One optimiser step on a batch in ``[0, 1]``; return the objective's values.

    The objective's forward runs under autocast in ``train.precision``; the losses come
    back in fp32 (the losses cast their inputs). fp16 scales the loss, unscales the
    gradients before clipping, and lets the scaler skip steps whose gradients overflowed.
    Nothing here waits for the device (except fp16's scaler: torch's ``GradScaler`` reads
    its overflow flag on the host each step; bf16 needs no scaler). A non-finite loss is
    *not* checked here (its step goes ahead and spoils the weights in memory): the epoch's
    :meth:`~hssl_cli.training.metrics.EpochMeter.divergence` catches it before any
    checkpoint is written.
    """
    optimizer, scaler = trainee.optimizer, trainee.scaler
    with autocast(images.device, recipe.train.precision):
        values = trainee.step(images, labels)
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(values["loss"]).backward()
    if recipe.train.grad_clip:
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(trainee.parameters, recipe.train.grad_clip)
    scaler.step(optimizer)
    scaler.update()
    return values


def train_epoch(
    trainee: Trainee,
    recipe: Recipe,
    source: BatchSource,
    epoch: int,
    step: int,
    report: Callable[[int, str | None], None],
    here: World = distributed.SINGLE,
    run_log: RunLog | None = None,
    start: int = 0,
    meter_sums: dict[str, torch.Tensor] | None = None,
    saves: MidEpochSaves | None = None,
) -> tuple[dict[str, Any], int]:
    """One pass over the shuffled data in full global batches (this rank's rows of each);
    return the epoch's metrics record (means over every rank) and the new global step.

    ``report(steps, status)`` advances the progress by ``steps``; ``status`` is the new
    progress text, given at most every :data:`STATUS_SECONDS` (None in between).
    ``run_log`` gets every step's values and writes them when the status is read and at
    the epoch's end, so per-step logging adds no wait for the device.

    Raises :class:`TrainingDiverged` if a loss was NaN or infinite, naming the first such
    step. The check reads the device, so it runs with the status (every
    :data:`STATUS_SECONDS`, in a single process) and once more after the last step, before
    the record is made: a diverged epoch never reaches the checkpoint, whose previous epoch
    stays intact; up to :data:`STATUS_SECONDS` of steps may run on spoiled weights before
    the run stops. With several ranks only the end-of-epoch check runs, on every rank at
    once, so that all of them stop together.

    ``start`` batches of the epoch are already done (a run resumed mid-epoch), with
    ``meter_sums`` their metric sums. ``saves`` saves the position mid-epoch and stops the
    run on a signal (:class:`~hssl_cli.training.stop.TrainingStopped`); a signal during
    the epoch's last step lets the epoch end first.
    """
    backbone, objective = trainee.backbone, trainee.objective
    batch_size, epochs = recipe.train.batch_size, recipe.train.epochs
    layout = memory_format(recipe.train.channels_last)
    steps = source.steps_per_epoch
    backbone.train()
    objective.train()
    meter = EpochMeter(batch_size)
    if meter_sums:
        meter.steps = start
        meter.sums = {name: total.to(source.device) for name, total in meter_sums.items()}
    if run_log is not None:
        run_log.start_epoch()
    rate = float("nan")
    next_status = time.monotonic() + STATUS_SECONDS
    batches = source.epoch(epoch, here.rank, here.size, start=start)
    for step_in_epoch, (images, labels) in enumerate(batches, start=start + 1):
        rate = learning_rate(recipe.optim, step, steps, epochs)
        for group in trainee.optimizer.param_groups:
            group["lr"] = rate
        batch = images.to(torch.float32, memory_format=layout).div_(255)
        values = train_step(trainee, recipe, batch, labels)
        step += 1
        objective.after_step(backbone, step, epochs * steps)
        meter.add(values)
        if run_log is not None:
            run_log.add_step(step, rate, values)
        status = None
        if time.monotonic() >= next_status:
            if here.size == 1:
                _check_finite(meter, epoch)
            status = meter.status()
            if run_log is not None:
                run_log.flush_steps()
            next_status = time.monotonic() + STATUS_SECONDS
        report(1, status)
        if saves is not None and step_in_epoch < steps:
            _maybe_save_or_stop(saves, meter, epoch, step_in_epoch, step, here, run_log)
    _check_finite(meter, epoch, here)
    if run_log is not None:
        run_log.flush_steps()
    meter.sums = distributed.mean_over_ranks(meter.sums)
    return meter.record(epoch + 1, step, rate), step


def _maybe_save_or_stop(
    saves: MidEpochSaves,
    meter: EpochMeter,
    epoch: int,
    step_in_epoch: int,
    step: int,
    here: World,
    run_log: RunLog | None,
) -> None:
    """After a step that is not the epoch's last: save the position at the marks of
    ``train.checkpoint_every_steps``, and stop if a signal came (all ranks together)."""
    at_mark = saves.every is not None and step_in_epoch % saves.every == 0
    stopping = saves.request.requested
    if here.size > 1:
        vote = at_mark or step_in_epoch % STOP_VOTE_STEPS == 0
        stopping = distributed.any_rank(stopping) if vote else False
    if not (at_mark or stopping):
        return
    signum = saves.request.signum or signal.SIGTERM
    if saves.every is None:
        finished = f"{epoch} finished epochs" if epoch else "nothing (no epoch had finished)"
        raise TrainingStopped(signum, f"the run folder keeps {finished}")
    _check_finite(meter, epoch, here)  # never save spoiled weights
    if run_log is not None:
        run_log.flush_steps()
    saves.save(epoch, step_in_epoch, step, meter)
    if stopping:
        raise TrainingStopped(
            signum, f"saved the position at epoch {epoch + 1}, step {step_in_epoch}"
        )


def _check_finite(meter: EpochMeter, epoch: int, here: World = distributed.SINGLE) -> None:
    diverged = meter.divergence()
    if here.size > 1 and distributed.any_rank(diverged is not None) and diverged is None:
        raise TrainingDiverged(f"loss became non-finite on another rank in epoch {epoch + 1}")
    if diverged is not None:
        at, loss = diverged
        raise TrainingDiverged(f"loss became {loss} at epoch {epoch + 1}, step {at}")


def pretrain(
    recipe: Recipe,
    out_dir: Path,
    device: torch.device,
    resume: bool = False,
    quiet: bool = False,
) -> TrainResult:
    """Train ``recipe`` into ``out_dir``: a checkpoint, the training state and a metrics
    line per epoch; with ``resume``, continue the run there from its last saved position.

    Rank 0 holds the run folder's lock (:mod:`hssl_cli.run_lock`) throughout, and first
    removes temporary files that killed writes left. SIGTERM, SIGINT and SIGUSR1 stop the
    run after the current step (:mod:`hssl_cli.training.stop`). A full disk is a user
    error: every write is atomic and the state precedes the checkpoint, so the run resumes
    once space is freed.

    ``train.compile`` compiles the backbone's forward (``nn.Module.compile``: the weights
    keep their names in checkpoints). fp16's loss scale is not part of the training state:
    a resumed fp16 run starts from the initial scale and finds its level again within a
    few (skipped) steps, so it is not bit-exact with an uninterrupted one.
    """
    here, device = distributed.start(device)
    try:
        with ExitStack() as stack:
            if here.is_main:
                stack.enter_context(hold_run_folder(out_dir))
                remove_temporaries(out_dir)
            request = stack.enter_context(stop_signals())
            return _pretrain(recipe, out_dir, device, here, request, resume, quiet)
    except Exception as err:
        if not _disk_full(err):
            raise
        raise HsslUserError(
            f"disk full while writing to {out_dir}; the run folder stays resumable: free "
            "space, then continue with --resume"
        ) from None


def _disk_full(err: BaseException) -> bool:
    """Whether ``err`` is a write that failed for want of space (safetensors reports it as
    its own error, quoting the OS's message)."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    from safetensors import SafetensorError

    text = str(err)
    full = ("No space left on device", "Disk quota exceeded")
    return isinstance(err, SafetensorError) and any(words in text for words in full)


def _pretrain(
    recipe: Recipe,
    out_dir: Path,
    device: torch.device,
    here: World,
    request: StopRequest,
    resume: bool,
    quiet: bool,
) -> TrainResult:
    from hssl_cli.data.batches import open_batches

    quiet = quiet or not here.is_main
    check_resumable(out_dir, recipe, resume)
    check_log_kinds(recipe.train.log)
    distributed.local_batch_size(recipe.train.batch_size, here.size)
    seed_everything(recipe.seed)
    source = open_batches(recipe.data, "train", recipe.train.batch_size, device, recipe.seed)
    epochs = recipe.train.epochs
    steps = source.steps_per_epoch
    resuming = resume and (out_dir / TRAIN_STATE_NAME).exists()
    trainee = build_trainee(recipe, source, device, initialize=not resuming, here=here)
    position = Position()
    if resuming:
        position = restore_state(out_dir, trainee.backbone, trainee.objective, trainee.optimizer)
        if position.step_in_epoch >= steps:
            raise HsslUserError(
                f"--resume: {out_dir / TRAIN_STATE_NAME} is at step {position.step_in_epoch} "
                f"of an epoch of {steps} steps; start a new run with another --out"
            )
    start_epoch, step = position.epoch, position.step
    distributed.barrier()  # every rank has read the run folder before rank 0 writes to it
    if here.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out_dir / RECIPE_NAME, recipe.to_yaml())
        # records past the saved position belong to work that is redone (or, on a fresh
        # start, to a run killed before its first save)
        keep_metrics_through(out_dir, start_epoch)
    shapes = feature_shapes(trainee.backbone, source.head(2), device)
    if (
        resuming
        and here.is_main
        and position.step_in_epoch == 0
        and start_epoch > 0
        and not checkpoint_is_current(out_dir, start_epoch)
    ):  # killed between the state and the checkpoint: the state holds that epoch's weights
        save_checkpoint(
            out_dir / CHECKPOINT_NAME,
            trainee.backbone,
            trainee.objective,
            recipe,
            start_epoch,
            shapes,
        )
    if recipe.train.compile and start_epoch < epochs:
        trainee.backbone.compile()

    def save_position(epoch: int, step_in_epoch: int, global_step: int, meter: EpochMeter) -> None:
        if here.is_main:
            mid_epoch = Position(epoch, global_step, step_in_epoch, meter.sums)
            save_state(out_dir, trainee.backbone, trainee.objective, trainee.optimizer, mid_epoch)

    saves = MidEpochSaves(request, recipe.train.checkpoint_every_steps, save_position)
    last_loss = float("nan")
    run_log = RunLog(out_dir, recipe, step, enabled=here.is_main)
    total = max(0, (epochs - start_epoch) * steps - position.step_in_epoch)
    with run_log, progress_bar(quiet) as progress:
        task = progress.add_task("pretrain", total=total, status="")
        for epoch in range(start_epoch, epochs):
            description = f"epoch {epoch + 1}/{epochs}"
            start = position.step_in_epoch if epoch == start_epoch else 0
            sums = position.meter_sums if epoch == start_epoch else None

            def report(advance: int, status: str | None, description: str = description) -> None:
                fields = {} if status is None else {"status": status}
                progress.update(task, advance=advance, description=description, **fields)

            try:
                record, step = train_epoch(
                    trainee, recipe, source, epoch, step, report, here, run_log, start, sums, saves
                )
            except TrainingDiverged as err:
                kept = (
                    f"the last good checkpoint ({epoch} epochs) is intact in {out_dir}"
                    if epoch
                    else "no epoch had finished, so no checkpoint was written"
                )
                raise TrainingDiverged(
                    f"{err}; {kept}. Lower optim.lr or set train.grad_clip"
                ) from None
            last_loss = record["loss"]
            if here.is_main:
                run_log.log_epoch(record)
                finished = Position(epoch + 1, step)
                save_state(
                    out_dir, trainee.backbone, trainee.objective, trainee.optimizer, finished
                )
                save_checkpoint(
                    out_dir / CHECKPOINT_NAME,
                    trainee.backbone,
                    trainee.objective,
                    recipe,
                    epoch + 1,
                    shapes,
                )
                if not progress.disable:
                    progress.console.log(epoch_line(record, epochs))
            stopping = request.requested
            if here.size > 1:
                stopping = distributed.any_rank(stopping)
            if stopping and epoch + 1 < epochs:
                signum = request.signum or signal.SIGTERM
                raise TrainingStopped(signum, f"saved {epoch + 1} finished epochs")
    source.close()
    if epochs == 0 and not resuming and here.is_main:
        save_checkpoint(
            out_dir / CHECKPOINT_NAME, trainee.backbone, trainee.objective, recipe, 0, shapes
        )
    return TrainResult(epochs, last_loss)
