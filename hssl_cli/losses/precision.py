"""Losses run in at least single precision, whatever precision the forward pass used."""

from __future__ import annotations

import torch


def at_least_fp32(values: torch.Tensor) -> torch.Tensor:
    """``values`` as float32 when it is half or bfloat16 (autocast); wider types stay."""
    if values.dtype in (torch.float16, torch.bfloat16):
        return values.float()
    return values
