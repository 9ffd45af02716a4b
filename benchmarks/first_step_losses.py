"""Loss at steps 1 and 2 of every shipped recipe on one 16-image digits batch.

A refactoring guard, not a speed benchmark: run it before and after a change that must
not alter results, then compare. Each recipe keeps its model, method and optimiser; only
the data is swapped for 16 embedded digits (so CIFAR recipes run here) and two epochs of
one step are trained.

    python benchmarks/first_step_losses.py --out before.json
    python benchmarks/first_step_losses.py --out after.json --compare before.json
    python benchmarks/first_step_losses.py --set optim.decay_norm_and_bias=true ...
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import torch

from hssl_cli.recipe import load_recipe
from hssl_cli.run_files import METRICS_NAME
from hssl_cli.training import pretrain

DATA = ["data.name=digits", "data.limit_train=16", "data.root=null", "data.path=null"]
DATA += ["data.test_path=null", "train.batch_size=16", "train.epochs=2"]


def losses(path: Path, extra: list[str]) -> list[float]:
    recipe = load_recipe(path, [*DATA, *extra])
    with tempfile.TemporaryDirectory() as folder:
        run = Path(folder) / "run"
        pretrain(recipe, run, torch.device("cpu"), quiet=True)
        lines = (run / METRICS_NAME).read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, help="write the losses as JSON here")
    parser.add_argument("--compare", type=Path, help="a JSON written by an earlier run")
    parser.add_argument("--set", action="append", default=[], help="extra KEY=VALUE")
    args = parser.parse_args()
    found = {}
    for path in sorted(Path("recipes").glob("*.yaml")):
        found[path.name] = losses(path, args.set)
        print(path.name, *(repr(value) for value in found[path.name]), flush=True)
    if args.out:
        args.out.write_text(json.dumps(found, indent=1))
    if args.compare:
        earlier = json.loads(args.compare.read_text())
        for step in (0, 1):
            same = sum(earlier.get(name, [None] * 2)[step] == v[step] for name, v in found.items())
            print(f"step {step + 1}: {same} of {len(found)} recipes give the identical loss")
    return 0


if __name__ == "__main__":
    sys.exit(main())
