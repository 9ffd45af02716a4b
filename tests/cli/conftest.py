"""Shared fixtures of the CLI tests: the command runner and a recipe writer."""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from hssl_cli.cli.main import app

Invoke = Callable[..., Any]  # returns typer.testing's Result


@pytest.fixture()
def invoke() -> Invoke:
    """``invoke("pretrain", "--recipe", ...)`` runs ``hssl`` in this process."""
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


@pytest.fixture()
def write_recipe(tmp_path: Path) -> Callable[[dict], Path]:
    def write(settings: dict) -> Path:
        path = tmp_path / "tiny.yaml"
        path.write_text(yaml.safe_dump(settings))
        return path

    return write


# A tiny H-SSL run on digits (C4 CNN, base augmentations) that trains in seconds; modules
# override what they need with ``tiny_run(...)``.
TINY_RUN = {
    "data": {"name": "digits", "limit_train": 192, "limit_test": 96, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 4]},
    "method": {
        "name": "hssl",
        "projector_hidden_dim": 16,
        "projector_out_dim": 8,
        "augment": {"crop_scale": [0.6, 1.0], "hflip": 0.0},
    },
    "train": {"epochs": 2, "batch_size": 64},
    "probe": {"steps": 20, "knn_k": 20},
}


@pytest.fixture(scope="session")
def tiny_run() -> Callable[..., dict]:
    """``tiny_run(data={"limit_train": 128}, seed=3)``: TINY_RUN with sections updated."""

    def build(**updates: Any) -> dict:
        settings = {key: dict(value) for key, value in TINY_RUN.items()}
        for key, value in updates.items():
            settings[key] = {**settings[key], **value} if isinstance(value, dict) else value
        return settings

    return build
