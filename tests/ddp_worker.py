"""Run by tests/test_distributed.py under torchrun: trains each case of a JSON file.

``python -m torch.distributed.run --nproc_per_node 2 tests/ddp_worker.py CASES.json OUT``
trains case ``name`` into ``OUT/name`` with ``hssl_cli.training.pretrain``; one launch
serves every case, so the test pays torch's and escnn's import once per process.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from hssl_cli import distributed
from hssl_cli.recipe import load_recipe
from hssl_cli.training import pretrain


def main() -> None:
    cases = json.loads(Path(sys.argv[1]).read_text())
    out = Path(sys.argv[2])
    try:
        for name, case in cases.items():
            recipe = load_recipe(case["recipe"], case["overrides"])
            pretrain(
                recipe,
                out / name,
                torch.device("cpu"),
                resume=case.get("resume", False),
                quiet=True,
            )
    finally:
        distributed.stop()


if __name__ == "__main__":
    main()
