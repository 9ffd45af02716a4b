"""One writer per run folder: an advisory ``fcntl.flock`` on a lock file inside it.

Two ``hssl pretrain`` processes on one ``--out`` would interleave their epochs in
``metrics.jsonl`` and overwrite each other's checkpoints. The lock is held for the whole
run and released by the kernel when the process ends, however it ends (kill -9 included),
so a stale lock never needs removing. The file keeps the holder's PID for the message.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hssl_cli.errors import HsslUserError
from hssl_cli.run_files import LOCK_NAME


def _open_lock(out_dir: Path) -> int:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        return os.open(out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise HsslUserError(
            f"cannot write the run folder {out_dir} ({err.strerror}); choose another --out"
        ) from None


def _refuse(out_dir: Path, descriptor: int) -> None:
    holder = os.pread(descriptor, 32, 0).decode("ascii", "replace").strip() or "unknown"
    os.close(descriptor)
    raise HsslUserError(
        f"{out_dir} is in use by another hssl process (PID {holder}); wait for it to finish, "
        "stop it, or choose another --out"
    )


@contextmanager
def hold_run_folder(out_dir: Path) -> Iterator[None]:
    """Hold ``out_dir``'s lock for the block (creating the folder); refuse with a user
    error naming the holder's PID when another process holds it. A folder created here
    that holds nothing but the lock when the block fails is removed again, so a run
    refused at its start leaves no trace."""
    created = not out_dir.exists()
    descriptor = _open_lock(out_dir)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        _refuse(out_dir, descriptor)
    try:
        try:
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, f"{os.getpid()}\n".encode("ascii"), 0)
        except OSError:
            pass  # the PID is only for the message; a full disk must not stop the lock
        yield
    except BaseException:
        if created and [path.name for path in out_dir.iterdir()] == [LOCK_NAME]:
            (out_dir / LOCK_NAME).unlink(missing_ok=True)
            out_dir.rmdir()
        raise
    finally:
        os.close(descriptor)  # releases the lock


def check_not_in_use(out_dir: Path) -> None:
    """Refuse like :func:`hold_run_folder` without keeping the lock (a launcher's check)."""
    if not (out_dir / LOCK_NAME).exists():
        return
    with hold_run_folder(out_dir):
        pass
