"""hssl: self-supervised learning with equivariant networks.

The Python API (see :mod:`hssl_cli.api`): ``from hssl_cli import load_recipe, pretrain,
linear_probe, inspect_equivariance, load_backbone``. Names resolve on first use (PEP 562),
so ``import hssl_cli`` loads neither torch nor escnn.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# The public functions and the module each lives in, imported when first asked for.
API = {
    "load_recipe": "hssl_cli.api",
    "pretrain": "hssl_cli.api",
    "linear_probe": "hssl_cli.api",
    "inspect_equivariance": "hssl_cli.api",
    "PretrainResult": "hssl_cli.api",
    "load_backbone": "hssl_cli.export",
}

__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    module = API.get(name)
    if module is None:
        raise AttributeError(f"module 'hssl_cli' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted([*globals(), *API])
