"""Training-step time of rotation-only H-SSL against its A-SSL twin (SimCLR with random
rotations), on the same backbone and batch, measured side by side in one run.

H-SSL reads both views from the fibers of one forward pass; SimCLR needs two. The
printed ratio is what ordering 1 of docs/methods.md calls "about half the time".

    python benchmarks/step_time.py [--recipe recipes/digits_rot4_theory.yaml] [--steps 30]

The scale group's twins (scale-only views against SimCLR with random input rescaling):

    python benchmarks/step_time.py --recipe recipes/digits_scale3.yaml --set method.augment=null \
        --twin recipes/digits_scale3_simclr.yaml \
        --twin-set 'method.augment={crop_scale: [1, 1], crop_ratio: [1, 1], hflip: 0,
                    jitter_p: 0, grayscale: 0, group_element: true}'
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from hssl_cli.data import channel_stats, load_images
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.recipe import load_recipe
from hssl_cli.training import make_optimizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", default="recipes/digits_rot4_theory.yaml")
    parser.add_argument("--twin", default="recipes/digits_rot4_theory_simclr.yaml")
    parser.add_argument("--set", action="append", default=[], help="override of --recipe")
    parser.add_argument("--twin-set", action="append", default=[], help="override of --twin")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    torch.manual_seed(0)
    runs = {}
    for label, path, overrides in (
        ("hssl", args.recipe, args.set),
        ("simclr", args.twin, args.twin_set),
    ):
        recipe = load_recipe(path, overrides)
        images = load_images(recipe.data, "train")
        backbone = build_backbone(recipe.model, images.images.shape[1])
        backbone.set_normalization(*channel_stats(images))
        objective = build_objective(recipe.method, backbone)
        batch = images.images[: recipe.train.batch_size].float() / 255
        optimizer = make_optimizer(recipe.optim, [backbone, objective])
        runs[label] = (backbone, objective, optimizer, batch)

    def timed(label: str) -> float:
        backbone, objective, optimizer, batch = runs[label]
        started = time.perf_counter()
        for _ in range(args.steps):
            loss = objective(backbone, batch)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        return (time.perf_counter() - started) / args.steps

    for label in runs:  # warm-up
        timed(label)
    samples: dict[str, list[float]] = {label: [] for label in runs}
    for _ in range(args.rounds):  # interleaved, so drift hits both alike
        for label in runs:
            samples[label].append(timed(label))
    hssl, simclr = (statistics.median(samples[k]) for k in ("hssl", "simclr"))
    print(f"threads: {torch.get_num_threads()}  batch: {runs['hssl'][3].shape[0]}")
    print(f"hssl   step: {hssl * 1000:8.1f} ms  (median of {args.rounds} x {args.steps} steps)")
    print(f"simclr step: {simclr * 1000:8.1f} ms")
    print(f"hssl / simclr step time: {hssl / simclr:.3f}")


if __name__ == "__main__":
    main()
