"""What a run logs: one ``metrics.jsonl`` line per epoch, always, and TensorBoard scalars
when ``train.log`` asks for them (``train.log: [jsonl, tensorboard]``).

TensorBoard's event files go in the run folder itself, so ``tensorboard --logdir runs``
lists every run by folder name, and ``tensorboard --logdir DIR/runs`` compares the runs of
an ``hssl ablate`` study. They hold:

- ``step/<name>`` for every value the objective returns (``loss`` and its terms,
  accuracies), ``step/lr`` and ``step/images_per_second``, at the global step;
- ``epoch/<name>``: the epoch's ``metrics.jsonl`` record (means over the epoch's steps and
  every rank, last learning rate, throughput, seconds), at the epoch number (1-based);
- ``recipe``: the resolved recipe, as text.

Per-step values never make the step loop wait for the device: :meth:`RunLog.add_step`
only keeps each step's tensors, and :meth:`RunLog.flush_steps` copies all of them to the
host at once, where the loop reads the device anyway (the progress text every few
seconds, and the end of each epoch). Every step is written; ``step/images_per_second`` is
the throughput since the previous read, written at its last step. With several processes
the per-step values are rank 0's (the global loss, for losses that gather the batch) and
only rank 0 writes.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import torch

from hssl_cli.errors import HsslUserError
from hssl_cli.training.metrics import append_metrics

if TYPE_CHECKING:
    from hssl_cli.config import Recipe

INSTALL_HINT = "pip install 'hssl[tensorboard]' (or make install)"


def summary_writer_class() -> type:
    """torch's ``SummaryWriter``, or a user error naming the install when tensorboard is
    missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise HsslUserError(
            f"train.log asks for tensorboard, which is not installed; install it with: "
            f"{INSTALL_HINT}, or drop tensorboard from train.log"
        ) from None
    return SummaryWriter


def check_log_kinds(kinds: list[str]) -> None:
    """Refuse a log the machine cannot write, before any training starts."""
    if "tensorboard" in kinds:
        summary_writer_class()


def _as_code_block(text: str) -> str:
    """Markdown (TensorBoard's text tab) showing ``text`` verbatim."""
    return "\n".join(f"    {line}" for line in text.splitlines())


def _to_host(values: list[torch.Tensor]) -> list[float]:
    """Scalars to Python floats with one device-to-host copy per device and dtype."""
    groups: dict[tuple[torch.device, torch.dtype], list[int]] = {}
    for index, value in enumerate(values):
        groups.setdefault((value.device, value.dtype), []).append(index)
    floats = [0.0] * len(values)
    for indices in groups.values():
        stacked = torch.stack([values[index].reshape(()) for index in indices])
        for index, number in zip(indices, stacked.double().cpu().tolist(), strict=True):
            floats[index] = number
    return floats


class RunLog:
    """A run's metric logs in ``out_dir``: ``metrics.jsonl`` always, TensorBoard on request.

    ``start_step`` is the global step a resumed run continues from: TensorBoard hides what
    an interrupted run logged past it (its ``purge_step``). ``enabled=False`` (ranks other
    than 0) makes every call do nothing. Use it as a context manager, which closes the
    event file.
    """

    def __init__(
        self, out_dir: Path, recipe: Recipe, start_step: int = 0, enabled: bool = True
    ) -> None:
        self.out_dir = out_dir
        self.enabled = enabled
        self.batch_size = recipe.train.batch_size
        self._pending: list[tuple[int, float, dict[str, torch.Tensor]]] = []
        self._window_start = time.perf_counter()
        self._writer: Any = None
        if enabled and "tensorboard" in recipe.train.log:
            writer_class = summary_writer_class()
            purge = start_step + 1 if start_step else None
            self._writer = writer_class(log_dir=str(out_dir), purge_step=purge)
            self._writer.add_text("recipe", _as_code_block(recipe.to_yaml()), start_step)

    def start_epoch(self) -> None:
        """Start the throughput window afresh (the time between epochs is not training)."""
        self._window_start = time.perf_counter()

    def add_step(self, step: int, lr: float, values: dict[str, Any]) -> None:
        """Keep step ``step``'s values for :meth:`flush_steps`; never waits for the device."""
        if self._writer is not None:
            kept = {name: torch.as_tensor(value).detach() for name, value in values.items()}
            self._pending.append((step, lr, kept))

    def flush_steps(self) -> None:
        """Write the kept steps' scalars. Reads the device: call it where the loop does."""
        if self._writer is None or not self._pending:
            return
        floats = iter(_to_host([value for *_, kept in self._pending for value in kept.values()]))
        for step, lr, kept in self._pending:
            for name in kept:
                self._writer.add_scalar(f"step/{name}", next(floats), step)
            self._writer.add_scalar("step/lr", lr, step)
        now = time.perf_counter()
        speed = len(self._pending) * self.batch_size / max(1e-9, now - self._window_start)
        self._writer.add_scalar("step/images_per_second", speed, self._pending[-1][0])
        self._pending.clear()
        self._window_start = now

    def log_epoch(self, record: dict[str, Any]) -> None:
        """Append the epoch's record to ``metrics.jsonl`` and write it as ``epoch/*``."""
        if not self.enabled:
            return
        append_metrics(self.out_dir, record)
        if self._writer is None:
            return
        for name, value in record.items():
            if name not in ("epoch", "step") and isinstance(value, (int, float)):
                self._writer.add_scalar(f"epoch/{name}", value, record["epoch"])
        self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def __enter__(self) -> RunLog:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()
