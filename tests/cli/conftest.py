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
