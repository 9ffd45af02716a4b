"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Every writer goes through :func:`atomic_path`: it writes a temporary file beside the target
(the same folder, so the rename stays on one file system), fsyncs it, renames it over the
target with ``os.replace`` and fsyncs the folder; on any failure the temporary file is
removed and the target is left as it was.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TEMPORARY_SUFFIX = ".tmp"


def _temporary_beside(path: Path) -> Path:
    """Create an empty, uniquely named hidden file beside ``path`` (mode as ``open`` gives)."""
    while True:
        candidate = path.with_name(f".{path.name}.{secrets.token_hex(4)}{TEMPORARY_SUFFIX}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return candidate


def _fsync(path: Path) -> None:
    with open(path, "rb") as handle:
        os.fsync(handle.fileno())


def _fsync_folder(folder: Path) -> None:
    """Make the rename itself durable; not every platform can open a folder, which is fine."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; on a clean exit it replaces ``path``.

    For writers that want a file name (safetensors' ``save_file``, ``savefig``). Creates the
    parent folders. If the block raises, the temporary file is deleted and ``path`` keeps
    its old content (or stays absent).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = _temporary_beside(path)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)  # only still there when something failed
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, value: Any, indent: int | None = None) -> None:
    atomic_write_text(path, json.dumps(value, indent=indent))


def atomic_append_line(path: str | Path, line: str) -> None:
    """Append one line (a newline is added) by rewriting the file atomically: a reader, or
    the file after a crash, holds every earlier line and the new one whole or not at all.
    For small files such as ``metrics.jsonl`` (one line per epoch)."""
    path = Path(path)
    try:
        old = path.read_bytes()
    except FileNotFoundError:
        old = b""
    atomic_write_bytes(path, old + line.encode("utf-8") + b"\n")


def remove_temporaries(folder: Path) -> list[Path]:
    """Delete the temporary files that writes killed mid-way left in ``folder`` (not below
    it); return them. Call it only while no other process writes there (the run lock)."""
    left = [
        path
        for path in folder.glob(f".*{TEMPORARY_SUFFIX}")
        if path.is_file() and path.name.count(".") >= 3
    ]
    for path in left:
        path.unlink(missing_ok=True)
    return left
