"""Registries whose entries are imported on first use.

Recipe validation checks names against the registries of data sets, backbones,
objectives and pretext tasks; their implementations need torch and escnn. An entry is
the implementation's module and attribute, so the names cost nothing to import.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lazy:
    """``module:attribute``, imported when :meth:`load` is first called."""

    module: str
    attribute: str

    def load(self) -> Any:
        return getattr(importlib.import_module(self.module), self.attribute)
