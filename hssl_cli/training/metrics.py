"""What a run reports: progress text every few seconds and one ``metrics.jsonl`` record per
epoch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from hssl_cli.io import atomic_append_line, atomic_write_text
from hssl_cli.run_files import METRICS_NAME


class EpochMeter:
    """Sums the objective's named values over an epoch's steps and times the epoch.

    The sums stay on the values' device (float64, so the mean is the one a host-side sum
    of the per-step floats gives): :meth:`add` only queues additions and never waits for
    the device. :meth:`status`, :meth:`divergence` and :meth:`record` read it, which is
    why the trainer calls them every few seconds and once per epoch, not every step.
    """

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.steps = 0
        self.sums: dict[str, torch.Tensor] = {}
        self.last_loss: torch.Tensor | None = None
        # The first step (1-based; 0: none yet) whose loss was not finite, and that loss.
        self._bad_step: torch.Tensor | None = None
        self._bad_loss: torch.Tensor | None = None
        self.started = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor]) -> None:
        self.steps += 1
        for name, value in values.items():
            value = torch.as_tensor(value).detach()
            total = self.sums.get(name)
            if total is None:
                self.sums[name] = value.to(torch.float64, copy=True)
            else:
                total.add_(value)
        loss = values["loss"].detach()
        self.last_loss = loss
        if self._bad_step is None:
            self._bad_step = torch.zeros((), dtype=torch.long, device=loss.device)
            self._bad_loss = torch.zeros((), dtype=torch.float32, device=loss.device)
        assert self._bad_loss is not None
        first = ~torch.isfinite(loss) & (self._bad_step == 0)
        self._bad_step = torch.where(first, self.steps, self._bad_step)
        self._bad_loss = torch.where(first, loss.float(), self._bad_loss)

    def divergence(self) -> tuple[int, float] | None:
        """``(step, loss)`` of the epoch's first non-finite loss (step 1-based), or None.
        Waits for the device."""
        if self._bad_step is None or self._bad_loss is None:
            return None
        step = int(self._bad_step)
        return (step, float(self._bad_loss)) if step else None

    def status(self) -> str:
        """The progress bar's text: the last step's loss and the epoch's speed so far.
        Waits for the device (so the speed counts finished work only)."""
        loss = float("nan") if self.last_loss is None else float(self.last_loss)
        speed = self.steps * self.batch_size / max(1e-9, time.perf_counter() - self.started)
        return f"loss {loss:.4f}  {speed:,.0f} img/s"

    def record(self, epoch: int, step: int, lr: float) -> dict[str, Any]:
        """The epoch's ``metrics.jsonl`` line: epoch (1-based), global step, last learning
        rate, wall time, throughput and the mean of every value the objective returned.
        Waits for the device (the epoch's time includes its last kernels)."""
        means = {name: float(total) / self.steps for name, total in self.sums.items()}
        seconds = time.perf_counter() - self.started
        return {
            "epoch": epoch,
            "step": step,
            "lr": lr,
            "epoch_seconds": round(seconds, 4),
            "images_per_second": round(self.steps * self.batch_size / seconds, 2),
            **means,
        }


def append_metrics(out_dir: Path, record: dict[str, Any]) -> None:
    """Add one record to the run's ``metrics.jsonl``, whole or not at all."""
    atomic_append_line(out_dir / METRICS_NAME, json.dumps(record))


def keep_metrics_through(out_dir: Path, epochs: int) -> None:
    """Drop the ``metrics.jsonl`` records of epochs after ``epochs``: a run killed after
    writing an epoch's record but before its training state retrains that epoch on
    ``--resume``, which must not leave the epoch twice. Unparseable lines are kept."""
    path = out_dir / METRICS_NAME
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except FileNotFoundError:
        return
    kept = [line for line in lines if _record_epoch(line) <= epochs]
    if kept != lines:
        atomic_write_text(path, "".join(line + "\n" for line in kept))


def _record_epoch(line: str) -> float:
    try:
        epoch = json.loads(line).get("epoch", 0)
    except (ValueError, AttributeError):
        return 0
    return epoch if isinstance(epoch, (int, float)) else 0


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """The line logged above the progress bar when an epoch ends."""
    return (
        f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  "
        f"{record['images_per_second']:,.0f} img/s  {record['epoch_seconds']:.1f}s"
    )
