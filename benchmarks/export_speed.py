"""Eval speed of ``hssl export``'s plain-torch backbone against the escnn model it came from.

For each escnn backbone (C4 CNN, C4 ResNet-18): a checkpoint with random weights and batch
norm statistics from a few training-mode batches, exported with ``export_checkpoint``; both
loaded with ``hssl_cli.load_backbone`` (the checkpoint: escnn; the folder: plain torch) and
timed side by side on the same images: eval mode, no grad, the whole forward (normalisation,
network, fiber and invariant readout). Each round times every side in turn, the order
reversed every other round, after a warm-up; the figure is the ratio of medians, escnn over
exported, beside the features' relative error.

    python benchmarks/export_speed.py                     # CPU sizes
    python benchmarks/export_speed.py --device cuda --json
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hssl_cli.checkpoint import save_checkpoint
from hssl_cli.export import export_checkpoint, load_backbone
from hssl_cli.models import build_backbone
from hssl_cli.recipe import validate_recipe

SIZES: dict[str, dict[str, Any]] = {
    "cpu": dict(batch=32, image=32, widths=[8, 16, 32], resnet_multiplier=0.25, rounds=5, steps=3),
    "cuda": dict(
        batch=256, image=32, widths=[32, 64, 128, 256], resnet_multiplier=1.0, rounds=7, steps=10
    ),
}  # fmt: skip


def model_sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {
        "cnn": {"backbone": "cnn", "group": args.group, "widths": args.widths},
        "e2resnet18": {
            "backbone": "e2resnet18",
            "group": args.group,
            "resnet_width": "activations",
            "width_multiplier": args.resnet_multiplier,
        },
    }


def write_checkpoint(model: dict[str, Any], image: int, path: Path) -> None:
    """Random weights (escnn's slow initialisation skipped) and realistic batch-norm statistics."""
    recipe = validate_recipe({"model": model, "method": {"name": "simclr"}})
    backbone = build_backbone(recipe.model, 3, initialize=False)
    for module in backbone.modules():
        weights = getattr(module, "weights", None)
        if isinstance(weights, nn.Parameter):  # an R2Conv's basis coefficients
            with torch.no_grad():
                weights.normal_(0.0, (2.0 / max(1, module.in_type.size * 9)) ** 0.5)
    backbone.train()
    with torch.no_grad():
        for _ in range(3):
            backbone(torch.rand(16, 3, image, image))
    save_checkpoint(path, backbone, nn.Module(), recipe, 0, {"input": [3, image, image]})


def seconds_per_call(step: Callable[[], Any], count: int, sync: Callable[[], None]) -> float:
    sync()
    started = time.perf_counter()
    for _ in range(count):
        step()
    sync()
    return (time.perf_counter() - started) / count


def side_by_side(
    sides: dict[str, Callable[[], Any]], rounds: int, steps: int, sync: Callable[[], None]
) -> dict[str, float]:
    """Median seconds per call of each side, the sides alternated round by round."""
    for step in sides.values():
        seconds_per_call(step, 2, sync)
    samples: dict[str, list[float]] = {name: [] for name in sides}
    names = list(sides)
    for index in range(rounds):
        for name in names if index % 2 == 0 else names[::-1]:
            samples[name].append(seconds_per_call(sides[name], steps, sync))
    return {name: statistics.median(values) for name, values in samples.items()}


def measure(name: str, model: dict[str, Any], args: argparse.Namespace, folder: Path) -> dict:
    device = torch.device(args.device)
    checkpoint = folder / f"{name}.safetensors"
    write_checkpoint(model, args.image, checkpoint)
    export_checkpoint(checkpoint, folder / name)
    escnn_model = load_backbone(checkpoint, device)
    exported = load_backbone(folder / name, device)
    images = torch.rand(args.batch, 3, args.image, args.image, device=device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    def forward(model: nn.Module) -> Callable[[], Any]:
        def step() -> Any:
            with torch.no_grad():
                return model(images)

        return step

    reference, output = forward(escnn_model)(), forward(exported)()
    error = max(
        ((output.invariant - reference.invariant).norm() / reference.invariant.norm()).item(),
        ((output.full - reference.full).norm() / reference.full.norm()).item(),
    )
    times = side_by_side(
        {"escnn": forward(escnn_model), "exported": forward(exported)},
        args.rounds,
        args.steps,
        sync,
    )
    return {
        "backbone": name,
        "model": model,
        "parameters": sum(p.numel() for p in exported.parameters()),
        "ms": {side: round(seconds * 1000, 3) for side, seconds in times.items()},
        "escnn_over_exported": round(times["escnn"] / times["exported"], 3),
        "relative_error": error,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--group", default="rot4")
    parser.add_argument("--batch", type=int)
    parser.add_argument("--image", type=int)
    parser.add_argument("--widths", help="cnn regular fields per stage, e.g. 8,16,32")
    parser.add_argument("--resnet-multiplier", type=float)
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--steps", type=int, help="timed forwards per side and round")
    parser.add_argument("--backbones", default="cnn,e2resnet18")
    args = parser.parse_args(argv)
    for key, value in SIZES[args.device].items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if isinstance(args.widths, str):
        args.widths = [int(width) for width in args.widths.split(",")]
    args.backbones = [name for name in args.backbones.split(",") if name]
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    sections = model_sections(args)
    with tempfile.TemporaryDirectory() as folder:
        rows = [measure(name, sections[name], args, Path(folder)) for name in args.backbones]
    settings = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch": args.batch,
        "image": args.image,
        "rounds": args.rounds,
        "steps": args.steps,
    }
    if args.json:
        print(json.dumps({"settings": settings, "rows": rows}))
        return
    print(
        f"eval forward, {settings['device']} ({settings['threads']} threads), batch "
        f"{args.batch}, {args.image}x{args.image}, median of {args.rounds} rounds x "
        f"{args.steps} forwards, sides alternated"
    )
    for row in rows:
        ms = row["ms"]
        print(
            f"  {row['backbone']:<11} {row['parameters']:>10,} params  escnn {ms['escnn']:8.2f} ms"
            f"  exported {ms['exported']:8.2f} ms  escnn/exported {row['escnn_over_exported']:.2f}"
            f"  rel err {row['relative_error']:.1e}"
        )


if __name__ == "__main__":
    main()
