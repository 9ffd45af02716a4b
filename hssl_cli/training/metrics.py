"""What a run reports: per-step progress text and one ``metrics.jsonl`` record per epoch."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch

from hssl_cli.io import atomic_append_line
from hssl_cli.run_files import METRICS_NAME


class EpochMeter:
    """Sums the objective's named values over an epoch's steps and times the epoch."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.steps = 0
        self.sums: dict[str, float] = {}
        self.started = time.perf_counter()

    def add(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self.sums[name] = self.sums.get(name, 0.0) + float(value.detach())
        self.steps += 1

    def status(self, loss: torch.Tensor) -> str:
        """The progress bar's text after a step: its loss and the epoch's speed so far."""
        speed = self.steps * self.batch_size / max(1e-9, time.perf_counter() - self.started)
        return f"loss {float(loss.detach()):.4f}  {speed:,.0f} img/s"

    def record(self, epoch: int, step: int, lr: float) -> dict[str, Any]:
        """The epoch's ``metrics.jsonl`` line: epoch (1-based), global step, last learning
        rate, wall time, throughput and the mean of every value the objective returned."""
        seconds = time.perf_counter() - self.started
        return {
            "epoch": epoch,
            "step": step,
            "lr": lr,
            "epoch_seconds": round(seconds, 4),
            "images_per_second": round(self.steps * self.batch_size / seconds, 2),
            **{name: total / self.steps for name, total in self.sums.items()},
        }


def append_metrics(out_dir: Path, record: dict[str, Any]) -> None:
    """Add one record to the run's ``metrics.jsonl``, whole or not at all."""
    atomic_append_line(out_dir / METRICS_NAME, json.dumps(record))


def epoch_line(record: dict[str, Any], epochs: int) -> str:
    """The line logged above the progress bar when an epoch ends."""
    return (
        f"epoch {record['epoch']}/{epochs}  loss {record['loss']:.4f}  "
        f"{record['images_per_second']:,.0f} img/s  {record['epoch_seconds']:.1f}s"
    )
