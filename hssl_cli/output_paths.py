"""Output paths checked before the work: a run folder or plot that cannot be written is
refused in one line at the start, not with a traceback after an hour of training.

The check writes (and removes) a small probe file in the deepest folder that exists
already, because permission bits do not tell: root may write anywhere by mode yet not in
``/proc`` or on a read-only mount.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hssl_cli.errors import HsslUserError, clip

PROBE_PREFIX = ".hssl-write-check-"


def _exists(path: Path, follow_symlinks: bool = True) -> bool:
    try:
        path.stat(follow_symlinks=follow_symlinks)
    except OSError:  # absent, or a name the file system refuses (too long, ...)
        return False
    return True


def _deepest_existing(path: Path, option: str) -> Path:
    """``path`` or its nearest ancestor that exists (the current folder for a relative one)."""
    current = path
    while not _exists(current) and current != current.parent:
        if _exists(current, follow_symlinks=False):
            raise HsslUserError(
                f"{option} {clip(str(path))}: {clip(str(current))} is a symbolic link to "
                "nothing (broken or a loop)"
            )
        current = current.parent
    return current if _exists(current) else Path(".")


def _probe(folder: Path, option: str, path: Path) -> None:
    """Create and remove a file in ``folder``, and check the length of the names still to
    be made below it; a refusal becomes the user error."""
    try:
        name_max = os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    for part in path.parts[len(folder.parts) if folder != Path(".") else 0 :]:
        if len(os.fsencode(part)) > name_max:
            raise HsslUserError(
                f"{option} {clip(str(path))}: the name {clip(part, 40)} is longer than the "
                f"{name_max} bytes the file system allows"
            )
    try:
        descriptor, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    except OSError as err:
        raise HsslUserError(
            f"{option} {clip(str(path))}: cannot write in {clip(str(folder))} "
            f"({err.strerror or type(err).__name__}); choose a writable location"
        ) from None
    os.close(descriptor)
    os.unlink(name)


def check_output_folder(path: str | Path, option: str = "--out") -> Path:
    """A folder that exists and takes files, or can be made where its ancestors take them."""
    path = Path(path).expanduser()
    existing = _deepest_existing(path, option)
    if not existing.is_dir():
        raise HsslUserError(
            f"{option} {clip(str(path))}: {clip(str(existing))} is a file, not a folder; "
            "give a folder path"
        )
    _probe(existing, option, path)
    return path


def check_output_file(path: str | Path, option: str) -> Path:
    """A file path whose folder exists and takes files, or can be made."""
    path = Path(path).expanduser()
    if _exists(path) and path.is_dir():
        raise HsslUserError(f"{option} {clip(str(path))} is a folder; give a file path")
    existing = _deepest_existing(path.parent, option)
    if not existing.is_dir():
        raise HsslUserError(
            f"{option} {clip(str(path))}: {clip(str(existing))} is a file, not a writable "
            "folder; give a path in a folder"
        )
    _probe(existing, option, path)
    return path
