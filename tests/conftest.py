"""Markers: ``cuda`` tests need a CUDA device, ``slow`` tests run with ``--run-slow`` only.

``pytest -m cuda`` runs the GPU checks on a machine that has one; elsewhere they are
skipped, as ``slow`` tests are unless ``--run-slow`` is given.
"""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-slow", action="store_true", default=False, help="Also run tests marked slow."
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    run_slow = config.getoption("--run-slow")
    cuda_tests = [item for item in items if item.get_closest_marker("cuda")]
    cuda = False
    if cuda_tests:  # torch only when a test asks for it
        import torch

        cuda = torch.cuda.is_available()
    for item in items:
        if item.get_closest_marker("slow") and not run_slow:
            item.add_marker(pytest.mark.skip(reason="slow: run with --run-slow"))
    if not cuda:
        for item in cuda_tests:
            item.add_marker(pytest.mark.skip(reason="needs a CUDA device"))
