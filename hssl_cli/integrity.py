"""What makes a damaged safetensors file recognisable before anything trusts it.

A safetensors file is an 8-byte little-endian header length, a JSON header (tensor
names, dtypes, shapes, offsets and the ``__metadata__`` strings) and the raw tensor
bytes. Two checks guard hssl's files:

- :func:`header_length` reads the length alone and refuses an absurd one, before any
  JSON is parsed or metadata quoted in a message;
- :func:`content_digest` is a SHA-256 over the metadata and every tensor (name, dtype,
  shape, bytes), in a fixed order that does not depend on how safetensors lays the file
  out. Stored in the metadata at save and recomputed at load, it turns a flipped bit,
  a truncated copy or an edited value anywhere in the file into a refusal. It is a
  checksum, not a signature: whoever edits a file on purpose can also recompute it.
"""

from __future__ import annotations

import hashlib
import json
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

DIGEST_KEY = "sha256"  # the metadata entry holding content_digest(...)
MAX_HEADER_BYTES = 16 * 2**20  # hssl's headers are kilobytes; safetensors itself allows 100 MB
HEADER_LENGTH_BYTES = 8


class DamagedFile(ValueError):
    """The file is not what its own header or digest says; the message says how."""


def header_length(path: Path) -> int:
    """The JSON header's length in bytes, checked against the cap and the file size."""
    with open(path, "rb") as handle:
        prefix = handle.read(HEADER_LENGTH_BYTES)
        size = handle.seek(0, 2)
    if len(prefix) < HEADER_LENGTH_BYTES:
        raise DamagedFile(f"{size} bytes, too short for a safetensors header")
    (length,) = struct.unpack("<Q", prefix)
    if length > MAX_HEADER_BYTES:
        raise DamagedFile(
            f"its header claims {length:,} bytes, more than the {MAX_HEADER_BYTES:,} allowed"
        )
    if HEADER_LENGTH_BYTES + length > size:
        raise DamagedFile(f"its header claims {length:,} bytes but the file has {size:,}")
    return length


def _tensor_bytes(tensor: torch.Tensor) -> memoryview:
    """The tensor's bytes as stored (contiguous, little-endian on every platform torch runs)."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return memoryview(flat.view(torch.uint8).numpy())


def content_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> str:
    """Hex SHA-256 of ``metadata`` (without :data:`DIGEST_KEY`) and ``tensors``."""
    described = {
        "metadata": {key: value for key, value in metadata.items() if key != DIGEST_KEY},
        "tensors": [
            [name, str(tensors[name].dtype), list(tensors[name].shape)] for name in sorted(tensors)
        ],
    }
    digest = hashlib.sha256(json.dumps(described, sort_keys=True).encode("utf-8"))
    for name in sorted(tensors):
        digest.update(_tensor_bytes(tensors[name]))
    return digest.hexdigest()


def read_tensors(
    path: Path, what: str, advice: str
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file, the header's length checked before it is
    parsed; any unreadable file becomes one :class:`~hssl_cli.errors.HsslUserError` line
    naming ``what`` the file should be and ending in ``advice``."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    from hssl_cli.errors import HsslUserError, clip, one_line

    try:
        header_length(path)
        with safe_open(str(path), "pt") as handle:
            metadata = dict(handle.metadata() or {})
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as err:  # DamagedFile is a ValueError
        raise HsslUserError(
            f"{path} is not a readable safetensors {what} ({clip(one_line(err), 120)}); {advice}"
        ) from None
    return tensors, metadata


def check_digest(
    path: Path,
    tensors: Mapping[str, torch.Tensor],
    metadata: dict[str, str],
    required: bool,
    fix: str,
) -> None:
    """Pop :data:`DIGEST_KEY` from ``metadata`` and refuse content that does not match it
    (or, when ``required``, a file without one)."""
    from hssl_cli.errors import HsslUserError

    stored = metadata.pop(DIGEST_KEY, None)
    if stored is None:
        if required:
            raise HsslUserError(f"{path} lacks the {DIGEST_KEY} of its content (damaged); {fix}")
        return
    if stored != content_digest(tensors, metadata):
        raise HsslUserError(
            f"{path} is damaged: its content does not match the {DIGEST_KEY} stored in it "
            f"(a corrupted copy or an edited file); {fix}"
        )
