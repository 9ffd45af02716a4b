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
