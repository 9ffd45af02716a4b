"""How models run on a device: autocast precision, inference, host-to-device copies.

Shared by the trainer (``train.precision``, ``train.channels_last``), the probe's feature
extraction and the equivariance inspection (``--precision``). Precisions are the recipe's
names: ``fp32`` (no autocast), ``bf16`` and ``fp16`` (``torch.autocast`` in that dtype;
what autocast keeps in fp32, such as reductions and softmax, stays there).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext

import torch
from torch import nn

from hssl_cli.errors import HsslUserError, one_line

PRECISIONS = ("fp32", "bf16", "fp16")
# ``--precision`` of the inference commands: auto is the recipe's on CUDA and fp32 elsewhere.
INFERENCE_PRECISIONS = ("auto", "recipe", *PRECISIONS)

_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision name; None for fp32 (no autocast)."""
    try:
        return _DTYPES[precision]
    except KeyError:
        raise HsslUserError(
            f"unknown precision {precision!r}; use {', '.join(PRECISIONS)}"
        ) from None


def _autocast_enabled(device_type: str, dtype: torch.dtype) -> bool:
    """Whether autocast is on, in ``dtype``, inside ``torch.autocast(device_type, dtype)``."""
    try:
        enabled = torch.is_autocast_enabled(device_type)
        active = torch.get_autocast_dtype(device_type)
    except (TypeError, AttributeError):  # torch < 2.4: no per-device queries
        if device_type == "cpu":
            enabled, active = torch.is_autocast_cpu_enabled(), torch.get_autocast_cpu_dtype()
        else:
            enabled, active = torch.is_autocast_enabled(), torch.get_autocast_gpu_dtype()
    return bool(enabled) and active == dtype


def check_precision(device: torch.device, precision: str, setting: str) -> None:
    """Refuse a precision that autocast cannot run on ``device`` (a CPU torch without fp16
    autocast, a GPU without bf16); ``setting`` names the option to change in the message."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return
    reason = "autocast turned itself off"
    try:
        # An unsupported dtype makes torch warn and disable autocast (CPU) or raise (CUDA).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with torch.autocast(device_type=device.type, dtype=dtype):
                enabled = _autocast_enabled(device.type, dtype)
    except RuntimeError as err:
        enabled, reason = False, one_line(err)
    if not enabled:
        other = "bf16" if precision == "fp16" else "fp16"
        raise HsslUserError(
            f"{setting}={precision}: autocast in {dtype} is not available on {device.type} "
            f"with torch {torch.__version__} ({reason}); use {setting}=fp32, or {other}"
        )


def autocast(device: torch.device, precision: str) -> AbstractContextManager[object]:
    """``torch.autocast`` in ``precision`` on ``device``'s type; nothing for fp32."""
    dtype = autocast_dtype(precision)
    if dtype is None:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextmanager
def inference(device: torch.device, precision: str) -> Iterator[None]:
    """``torch.inference_mode`` and autocast in ``precision``: for forward passes only.

    Put models in eval mode *before* entering: escnn caches its expanded filters when a
    module turns to eval, and a cache made here would be an inference tensor.
    """
    with torch.inference_mode(), autocast(device, precision):
        yield


@contextmanager
def evaluating(*models: nn.Module | None) -> Iterator[None]:
    """``models`` in eval mode inside, each back in its own mode after (None is skipped).

    Enter it before :func:`inference` (see there).
    """
    present = [model for model in models if model is not None]
    modes = [model.training for model in present]
    for model in present:
        model.eval()
    try:
        yield
    finally:
        for model, mode in zip(present, modes, strict=True):
            model.train(mode)


def check_precision_choice(choice: str) -> None:
    """Refuse a ``--precision`` that is none of :data:`INFERENCE_PRECISIONS`."""
    if choice not in INFERENCE_PRECISIONS:
        raise HsslUserError(f"--precision {choice!r}: use {', '.join(INFERENCE_PRECISIONS)}")


def inference_precision(choice: str, recipe_precision: str, device: torch.device) -> str:
    """``--precision``: fp32, bf16 or fp16 as given; ``recipe``: the recipe's
    ``train.precision``; ``auto``: the recipe's on CUDA, fp32 elsewhere (a CPU gains little
    from autocast and the measurements are exact in fp32)."""
    check_precision_choice(choice)
    if choice == "recipe" or (choice == "auto" and device.type == "cuda"):
        return recipe_precision
    return "fp32" if choice == "auto" else choice


def to_device(tensor: torch.Tensor, device: torch.device) -> torch.Tensor:
    """``tensor`` on ``device``; host to CUDA goes through pinned memory without blocking
    (the copy is ordered on the current stream, so later kernels see the data)."""
    if device.type == "cuda" and tensor.device.type == "cpu":
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(device, non_blocking=True)
    return tensor.to(device)


def memory_format(channels_last: bool) -> torch.memory_format:
    """What ``train.channels_last`` asks of 4-D weights and batches (``Tensor.to`` and
    ``Module.to``): channels-last, or the layout they have."""
    return torch.channels_last if channels_last else torch.preserve_format
