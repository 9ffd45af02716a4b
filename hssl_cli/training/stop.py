"""Stopping a run on a signal without losing it: SIGTERM, SIGINT and SIGUSR1.

Schedulers send SIGTERM before they kill a job, SLURM sends the signal its ``--signal``
option names (``USR1@120``: SIGUSR1 two minutes before) before preemption, and Ctrl-C
sends SIGINT. While :func:`stop_signals` is active each of them only raises a flag; the
trainer reads it after every step, saves what it may (the position within the epoch when
``train.checkpoint_every_steps`` is set, else the last finished epoch's files stay as they
are) and raises :class:`TrainingStopped`, which the CLI turns into a ``--resume`` hint and
exit code 128 + the signal's number (SIGINT 130, SIGTERM 143, SIGUSR1 138). A second
SIGINT while the flag is up interrupts at once (the run files stay resumable: every write
is atomic and the training state is written before the checkpoint).
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)


class TrainingStopped(KeyboardInterrupt):
    """A signal stopped the run after saving. A ``KeyboardInterrupt``, so code that handles
    Ctrl-C handles every stop signal too."""

    def __init__(self, signum: int, saved: str) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.saved = saved  # what the run folder now holds, in words

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


class StopRequest:
    """The first stop signal received while :func:`stop_signals` is active (None: none)."""

    def __init__(self) -> None:
        self.signum: int | None = None

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _receive(self, signum: int, frame: FrameType | None) -> None:
        if self.signum == signal.SIGINT and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        if self.signum is None:
            self.signum = signum


@contextmanager
def stop_signals() -> Iterator[StopRequest]:
    """Turn the stop signals into a :class:`StopRequest` flag for the block's duration
    (outside the main thread, where Python cannot set handlers, the flag never rises)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return
    previous = {signum: signal.signal(signum, request._receive) for signum in STOP_SIGNALS}
    try:
        yield request
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
