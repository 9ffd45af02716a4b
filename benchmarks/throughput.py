"""Training throughput of every objective on the CNN and ResNet-18 backbones, and ratios.

What it measures, in this order (the cold start last, in fresh child processes):

- **training images/s** of every objective (``METHOD_CONFIGS``) on each backbone at fp32
  and bf16 (``torch.autocast`` around forward and loss). A step is the objective's whole
  work: its views, forward, backward, optimiser step and ``after_step``. Methods run at
  their defaults, plus SimCLR's CIFAR augmentations where a method's ``augment`` defaults
  to none (hssl, essl, eqlabels); a method the backbone's group cannot serve shows
  ``n/a``. The optimiser is cifar_rot4.yaml's (SGD, momentum 0.9). Backbones are built
  once, with random weights instead of escnn's slow initialisation (timings do not depend
  on the values), and every cell starts from the same weights.
- **ratios**, each side measured in turn in the same rounds (order alternating, median
  over rounds), so load changes hit both alike: escnn C4 backbone against the plain twin
  of equal activations (``model.structure: unstructured``: |G| times the channels),
  training step and eval forward, the latter also after escnn's ``export()`` to plain
  torch modules; rotation-only H-SSL against its SimCLR twin (one forward against two);
  H-SSL with ``all_fibers_positive`` (2|G| views from two forwards) against SimCLR with
  2|G| views of each image (2|G| forwards, the same multi-positive NT-Xent) and against
  SimCLR at |G| times the batch (two views each: as many embeddings).
- **cold start** per backbone, in a fresh process as ``hssl pretrain`` pays it: importing
  torch and hssl, building the backbone with escnn's basis construction and weight
  initialisation (escnn issue #54: its He initialisation takes minutes for wide models),
  the objective and optimiser, and the first training step; then a second build without
  initialisation (warm basis caches, as BYOL's target or a checkpoint load does).

    python benchmarks/throughput.py --quick                  # tiny sizes, a smoke run
    python benchmarks/throughput.py                          # CPU-sized defaults
    python benchmarks/throughput.py --device cuda --json     # CIFAR-sized, one JSON object
    python benchmarks/throughput.py --device cuda --save out.json  # kept up to date as it runs
    python benchmarks/throughput.py --report out.json        # the table of a saved JSON run
"""

from __future__ import annotations

# The clock starts before the imports, which the cold start counts:
# ruff: noqa: E402
import time

_PROCESS_START = time.perf_counter()

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from hssl_cli.config import METHOD_CONFIGS
from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.recipe import validate_recipe
from hssl_cli.training import make_optimizer

_IMPORTED = time.perf_counter()

OPTIM = {"name": "sgd", "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
CLASSES = 10
# Sizes per device; --quick replaces them with tiny ones. Explicit options win over both.
SIZES: dict[str, dict[str, Any]] = {
    "cpu": dict(
        batch=16, image=32, widths=[8, 16, 32], convs=1, resnet_multiplier=0.125,
        warmup=2, steps=5, rounds=3, ratio_steps=3,
    ),
    "cuda": dict(
        batch=256, image=32, widths=[32, 64, 128, 256], convs=2, resnet_multiplier=1.0,
        warmup=3, steps=10, rounds=5, ratio_steps=5,
    ),
    "quick": dict(
        batch=8, image=16, widths=[4, 8], convs=1, resnet_multiplier=0.0625,
        warmup=1, steps=2, rounds=2, ratio_steps=1,
    ),
}  # fmt: skip
BACKBONES = ("cnn", "cnn-plain", "e2resnet18", "e2resnet18-plain", "resnet18")
DEFAULT_BACKBONES = "cnn,e2resnet18,resnet18"


# ---------------------------------------------------------------- settings and models


def model_section(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """The recipe's ``model`` section of a backbone name of ``BACKBONES``."""
    plain = name.endswith("-plain")  # the escnn model's twin of equal activations
    structure = "unstructured" if plain else "equivariant"
    if name.startswith("cnn"):
        return {
            "backbone": "cnn",
            "group": args.group,
            "structure": structure,
            "widths": args.widths,
            "convs_per_stage": args.convs,
        }
    if name.startswith("e2resnet18"):
        return {
            "backbone": "e2resnet18",
            "group": args.group,
            "structure": structure,
            "resnet_width": args.resnet_width,
            "width_multiplier": args.resnet_multiplier,
        }
    return {"backbone": "resnet18", "group": "trivial", "width_multiplier": args.resnet_multiplier}


def describe_backbone(name: str, args: argparse.Namespace) -> str:
    group = args.group.upper() if name != "resnet18" else "trivial"
    if name.startswith("cnn"):
        kind = "plain CNN (|G| x channels)" if name.endswith("-plain") else "escnn CNN"
        return f"{kind}, {group}, widths {args.widths}, {args.convs} conv(s) per stage"
    if name.startswith("e2resnet18"):
        kind = "plain twin" if name.endswith("-plain") else "escnn ResNet-18"
        return f"{kind}, {group}, resnet_width {args.resnet_width} x{args.resnet_multiplier}"
    return f"torchvision ResNet-18 (CIFAR stem) x{args.resnet_multiplier}"


def method_section(name: str) -> dict[str, Any]:
    """Defaults, plus SimCLR's CIFAR augmentations where the method's ``augment`` is optional."""
    fields = METHOD_CONFIGS[name].model_fields
    method: dict[str, Any] = {"name": name}
    if "augment" in fields and fields["augment"].default is None:
        method["augment"] = {}
    return method


def recipe(model: dict[str, Any], method: dict[str, Any], batch: int):
    return validate_recipe(
        {"model": model, "method": method, "optim": OPTIM, "train": {"batch_size": batch}},
        source="throughput",
    )


def randomize_escnn_weights(module: nn.Module) -> None:
    """A fast stand-in for escnn's He initialisation (timings do not depend on the values)."""
    for child in module.modules():
        weights = getattr(child, "weights", None)
        if isinstance(weights, nn.Parameter) and type(child).__name__ == "R2Conv":
            with torch.no_grad():
                weights.normal_(0.0, (2.0 / max(1, child.in_type.size * 9)) ** 0.5)


def tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """Parameters and buffers by name (escnn adds and drops its cached ``filter`` buffers as
    it switches between train and eval, so a state dict does not round-trip)."""
    return {**dict(module.named_parameters()), **dict(module.named_buffers())}


@dataclass
class Built:
    """A backbone built once; ``fresh()`` restores its initial weights for the next cell."""

    backbone: nn.Module
    initial: dict[str, torch.Tensor]
    params: int
    config: Any  # the model section it was built from

    def fresh(self) -> nn.Module:
        self.backbone.train()
        with torch.no_grad():
            for name, tensor in tensors(self.backbone).items():
                if name in self.initial:
                    tensor.copy_(self.initial[name])
        self.backbone.zero_grad(set_to_none=True)
        return self.backbone


@dataclass
class Bench:
    args: argparse.Namespace
    device: torch.device
    built: dict[str, Built] = field(default_factory=dict)
    images: dict[int, tuple[torch.Tensor, torch.Tensor]] = field(default_factory=dict)

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def backbone(self, name: str) -> nn.Module:
        """Built without escnn's slow initialisation (the cold start times that), then kept."""
        if name not in self.built:
            config = recipe(model_section(name, self.args), {"name": "simclr"}, 2).model
            backbone = build_backbone(config, 3, initialize=False)
            randomize_escnn_weights(backbone)
            backbone.to(self.device)
            backbone.train()
            initial = {k: v.detach().clone() for k, v in tensors(backbone).items()}
            params = sum(p.numel() for p in backbone.parameters())
            self.built[name] = Built(backbone, initial, params, config)
        return self.built[name].fresh()

    def batch(self, size: int) -> tuple[torch.Tensor, torch.Tensor]:
        if size not in self.images:
            generator = torch.Generator().manual_seed(size)
            shape = (size, 3, self.args.image, self.args.image)
            images = torch.rand(shape, generator=generator)
            labels = torch.randint(0, CLASSES, (size,), generator=generator)
            self.images[size] = (images.to(self.device), labels.to(self.device))
        return self.images[size]

    def trainer(
        self,
        backbone: nn.Module,
        objective: nn.Module,
        optim_config: Any,
        batch: int,
        precision: str,
    ) -> Callable[[], None]:
        """One training step as ``hssl pretrain`` runs it, with autocast for bf16."""
        optimizer = make_optimizer(optim_config, [backbone, objective])
        images, labels = self.batch(batch)
        autocast = precision == "bf16"
        counter = [0]

        def step() -> None:
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=autocast):
                values = objective(backbone, images, labels)
            optimizer.zero_grad(set_to_none=True)
            values["loss"].backward()
            optimizer.step()
            counter[0] += 1
            after = getattr(objective, "after_step", None)
            if after is not None:
                after(backbone, counter[0], 1000)

        return step

    def train_step(
        self, backbone_name: str, method: dict[str, Any], batch: int, precision: str
    ) -> Callable[[], None]:
        config = recipe(model_section(backbone_name, self.args), method, batch)
        backbone = self.backbone(backbone_name)
        objective = build_objective(config.method, backbone).to(self.device)
        return self.trainer(backbone, objective, config.optim, batch, precision)

    def timed(self, step: Callable[[], None], count: int) -> float:
        """Seconds per call of ``step``, over ``count`` calls (0 for none)."""
        if count <= 0:
            return 0.0
        self.sync()
        started = time.perf_counter()
        for _ in range(count):
            step()
        self.sync()
        return (time.perf_counter() - started) / count

    def interleaved(self, sides: dict[str, Callable[[], None]]) -> dict[str, float]:
        """Median seconds per call of each side; each round runs every side in turn, the
        order reversed every other round, after one warm-up pass of each."""
        for step in sides.values():
            self.timed(step, self.args.warmup)
        samples: dict[str, list[float]] = {name: [] for name in sides}
        names = list(sides)
        for round_index in range(self.args.rounds):
            for name in names if round_index % 2 == 0 else names[::-1]:
                samples[name].append(self.timed(sides[name], self.args.ratio_steps))
        return {name: statistics.median(values) for name, values in samples.items()}

    def release(self) -> None:
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()


# ---------------------------------------------------------------- the throughput table


def first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def progress(text: str) -> None:
    """Where the benchmark is, on stderr (stdout holds the report or the JSON object)."""
    print(f"[{time.perf_counter() - _PROCESS_START:7.1f} s] {text}", file=sys.stderr, flush=True)


def throughput_table(bench: Bench, rows: list[dict[str, Any]], saved: Callable[[], None]) -> None:
    """Appends one row per backbone x method x precision to ``rows``."""
    args = bench.args
    for backbone_name in args.backbones:
        for method_name in args.methods:
            for precision in args.precisions:
                row = table_cell(bench, backbone_name, method_name, precision)
                bench.release()  # the cell's objective and optimiser are gone now
                rows.append(row)
                saved()
                shown = row.get("images_per_s", row["status"])
                progress(f"{backbone_name:<17} {method_name:<12} {precision:<5} {shown}")


def table_cell(bench: Bench, backbone_name: str, method_name: str, precision: str) -> dict:
    args = bench.args
    row: dict[str, Any] = {
        "backbone": backbone_name,
        "method": method_name,
        "precision": precision,
        "batch": args.batch,
    }
    try:
        started = time.perf_counter()
        step = bench.train_step(backbone_name, method_section(method_name), args.batch, precision)
        step()
        bench.sync()
        first = time.perf_counter() - started
        bench.timed(step, args.warmup - 1)
        seconds = bench.timed(step, args.steps)
        row.update(
            status="ok",
            first_step_s=round(first, 3),
            step_ms=round(seconds * 1000, 3),
            images_per_s=round(args.batch / seconds, 1),
        )
    except HsslUserError as err:  # the recipe is invalid: the method cannot use this backbone
        row.update(status="n/a", reason=str(err).removeprefix("throughput: "))
    except Exception as err:  # a broken cell is reported, the rest still runs
        row.update(status="error", reason=first_line(err))
    return row


# ---------------------------------------------------------------- ratios


class MultiViewSimclr(nn.Module):
    """SimCLR with ``views`` views per image: each a base augmentation plus a random group
    element, one backbone forward per view (as SimCLR runs its two), identity-fiber readout,
    and NT-Xent with every other view of the image as a positive: the loss H-SSL's
    ``all_fibers_positive`` uses, on as many embeddings."""

    def __init__(self, simclr: nn.Module, views: int) -> None:
        super().__init__()
        self.simclr = simclr
        self.views = views

    def forward(self, backbone, images, labels=None) -> dict[str, torch.Tensor]:
        from hssl_cli.losses import nt_xent

        s = self.simclr
        features = [s.read(backbone(s.augment(images))) for _ in range(self.views)]
        embeddings = s.head(torch.cat(features))
        ids = torch.arange(images.shape[0], device=images.device).repeat(self.views)
        return {"loss": nt_xent(embeddings, ids, s.config.temperature)}


def export_body(bench: Bench, name: str) -> nn.Module:
    """The body of backbone ``name`` as plain torch modules (``hssl export``'s conversion, through
    escnn's ``export()``), from a twin built with the same weights (``export`` switches modules
    to eval mode)."""
    from hssl_cli.export import export_backbone

    live = bench.built[name].backbone
    twin = build_backbone(bench.built[name].config, 3, initialize=False).to(bench.device)
    weights = tensors(live)
    with torch.no_grad():
        for key, tensor in tensors(twin).items():
            tensor.copy_(weights[key])
    return export_backbone(twin)[1].network


def eval_sides(
    bench: Bench, equivariant: str, plain: str
) -> tuple[dict[str, Callable[[], None]], float]:
    """Eval-mode forwards (no grad) of the escnn model, its export and its plain twin, and
    the export's largest deviation from escnn's output (relative to its largest value)."""
    images, _ = bench.batch(bench.args.batch)
    escnn_model = bench.backbone(equivariant).eval()
    body = export_body(bench, equivariant)
    plain_model = bench.backbone(plain).eval()

    def escnn_forward() -> None:
        with torch.no_grad():
            escnn_model.flat_feature_map(escnn_model.normalize(images))

    def exported_forward() -> None:
        with torch.no_grad():
            body(escnn_model.normalize(images))

    def plain_forward() -> None:
        with torch.no_grad():
            plain_model.flat_feature_map(plain_model.normalize(images))

    with torch.no_grad():
        normalized = escnn_model.normalize(images)
        reference = escnn_model.flat_feature_map(normalized)
        error = (body(normalized) - reference).abs().max() / reference.abs().max().clamp_min(1e-12)
    sides = {"escnn": escnn_forward, "exported": exported_forward, "plain": plain_forward}
    return sides, float(error)


def ratio(
    name: str, what: str, times: dict[str, float], top: str, bottom: str, images: dict[str, int]
) -> dict[str, Any]:
    return {
        "name": name,
        "what": what,
        "ms": {side: round(seconds * 1000, 3) for side, seconds in times.items()},
        "images_per_step": images,
        "numerator": top,
        "denominator": bottom,
        "ratio": round(times[top] / times[bottom], 3),
    }


HSSL_AUG = {"name": "hssl", "augment": {}}
ROTATION_ONLY_SIMCLR = {  # digits_rot4_theory_simclr.yaml's method: a random rotation only
    "name": "simclr",
    "readout": "fiber",
    "augment": {
        "crop_scale": [1.0, 1.0],
        "crop_ratio": [1.0, 1.0],
        "hflip": 0.0,
        "jitter_p": 0.0,
        "grayscale": 0.0,
        "group_element": True,
    },
}
SIMCLR_ROT = {"name": "simclr", "readout": "fiber", "augment": {"group_element": True}}


def escnn_against_plain(bench: Bench, equivariant: str, plain: str) -> list[dict[str, Any]]:
    args = bench.args
    batch, precision = args.batch, args.ratio_precision
    label = "CNN" if equivariant == "cnn" else "ResNet-18"
    times = bench.interleaved(
        {
            "escnn": bench.train_step(equivariant, HSSL_AUG, batch, precision),
            "plain": bench.train_step(plain, HSSL_AUG, batch, precision),
        }
    )
    train = ratio(
        f"escnn {args.group} {label} / plain twin, train step",
        f"H-SSL + base aug, {precision}; the plain twin (model.structure=unstructured) has "
        "|G| x the channels: equal activations",
        times,
        "escnn",
        "plain",
        {"escnn": batch, "plain": batch},
    )
    bench.release()
    sides, error = eval_sides(bench, equivariant, plain)
    times = bench.interleaved(sides)
    evaluation = ratio(
        f"escnn {args.group} {label} / plain twin, eval forward",
        "eval mode, no grad, fp32, the backbone's feature map; 'exported' is the escnn body "
        "as hssl export writes it (escnn's export() to plain torch modules)",
        times,
        "escnn",
        "plain",
        {side: batch for side in times},
    )
    evaluation["exported_over_plain"] = round(times["exported"] / times["plain"], 3)
    evaluation["escnn_over_exported"] = round(times["escnn"] / times["exported"], 3)
    evaluation["export_max_relative_error"] = error
    return [train, evaluation]


def rotation_only(bench: Bench) -> list[dict[str, Any]]:
    args = bench.args
    batch, precision = args.batch, args.ratio_precision
    times = bench.interleaved(
        {
            "hssl": bench.train_step("cnn", {"name": "hssl", "augment": None}, batch, precision),
            "simclr": bench.train_step("cnn", ROTATION_ONLY_SIMCLR, batch, precision),
        }
    )
    what = (
        f"escnn {args.group} CNN, {precision}; H-SSL reads both views from the fibers of one "
        "forward, its SimCLR twin rotates the input at random: two forwards"
    )
    return [
        ratio(
            "rotation-only H-SSL / SimCLR twin, train step",
            what,
            times,
            "hssl",
            "simclr",
            {"hssl": batch, "simclr": batch},
        )
    ]


def all_fibers(bench: Bench) -> list[dict[str, Any]]:
    args = bench.args
    batch, precision = args.batch, args.ratio_precision
    views = 2 * get_group(args.group).order
    config = recipe(model_section("cnn", args), SIMCLR_ROT, batch)
    backbone = bench.backbone("cnn")
    many_views = MultiViewSimclr(build_objective(config.method, backbone), views)
    many_views.to(bench.device)
    all_positive = {**HSSL_AUG, "all_fibers_positive": True}
    times = bench.interleaved(
        {
            "hssl_all_fibers": bench.train_step("cnn", all_positive, batch, precision),
            "simclr_2G_views": bench.trainer(backbone, many_views, config.optim, batch, precision),
            "simclr_G_batch": bench.train_step("cnn", SIMCLR_ROT, views // 2 * batch, precision),
        }
    )
    what = (
        f"escnn {args.group} CNN, {precision}; each side makes 2|G| x {batch} = {views * batch} "
        f"embeddings a step. hssl_all_fibers: all_fibers_positive + base aug, {views} views "
        f"from two forwards of {batch} images. simclr_2G_views: {views} views of {batch} images "
        f"(base aug + random group element, identity fiber), {views} forwards, the same "
        f"multi-positive NT-Xent. simclr_G_batch: SimCLR's two views of |G| x {batch} = "
        f"{views // 2 * batch} images"
    )
    entry = ratio(
        "H-SSL all fibers positive / SimCLR with 2|G| views, train step",
        what,
        times,
        "hssl_all_fibers",
        "simclr_2G_views",
        {"hssl_all_fibers": batch, "simclr_2G_views": batch, "simclr_G_batch": views // 2 * batch},
    )
    entry["hssl_over_simclr_G_batch"] = round(times["hssl_all_fibers"] / times["simclr_G_batch"], 3)
    return [entry]


def ratios(bench: Bench, found: list[dict[str, Any]], saved: Callable[[], None]) -> None:
    """Appends every ratio to ``found``; one that fails is reported with its error and the
    others still run."""
    parts: list[tuple[str, Callable[[], list[dict[str, Any]]]]] = [
        ("escnn CNN / plain twin", lambda: escnn_against_plain(bench, "cnn", "cnn-plain"))
    ]
    if any(name.startswith("e2resnet18") for name in bench.args.backbones):
        parts.append(
            (
                "escnn ResNet-18 / plain twin",
                lambda: escnn_against_plain(bench, "e2resnet18", "e2resnet18-plain"),
            )
        )
    parts += [
        ("rotation-only H-SSL / SimCLR twin", lambda: rotation_only(bench)),
        ("H-SSL all fibers positive / SimCLR with 2|G| views", lambda: all_fibers(bench)),
    ]
    for name, measure in parts:
        progress(f"ratio: {name}")
        try:
            found += measure()
        except Exception as err:  # reported; the other ratios still run
            found.append({"name": name, "error": first_line(err)})
        saved()
        bench.release()


# ---------------------------------------------------------------- cold start


def cold_start(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """In this (fresh) process: build as ``hssl pretrain`` does, then one H-SSL step."""
    bench = Bench(args, device)
    name = args.cold_start
    config = recipe(model_section(name, args), method_section("hssl"), args.batch)
    started = time.perf_counter()
    backbone = build_backbone(config.model, 3, initialize=True)
    built = time.perf_counter()
    backbone.to(device)
    objective = build_objective(config.method, backbone).to(device)
    step = bench.trainer(backbone, objective, config.optim, args.batch, "fp32")
    bench.sync()
    ready = time.perf_counter()
    step()
    bench.sync()
    stepped = time.perf_counter()
    build_backbone(config.model, 3, initialize=False)
    rebuilt = time.perf_counter()
    return {
        "backbone": name,
        "params": sum(p.numel() for p in backbone.parameters()),
        "import_s": round(_IMPORTED - _PROCESS_START, 3),
        "build_s": round(built - started, 3),
        "setup_s": round(ready - built, 3),
        "first_step_s": round(stepped - ready, 3),
        "time_to_first_step_s": round(stepped - _PROCESS_START, 3),
        "rebuild_no_init_s": round(rebuilt - stepped, 3),
    }


def cold_starts(
    args: argparse.Namespace, results: list[dict[str, Any]], saved: Callable[[], None]
) -> None:
    """Appends one fresh child process's cold start per backbone to ``results``."""
    for name in args.backbones:
        command = [
            sys.executable,
            __file__,
            "--cold-start",
            name,
            *sizes_as_options(args),
        ]
        try:
            done = subprocess.run(
                command, capture_output=True, text=True, timeout=args.cold_timeout
            )
        except subprocess.TimeoutExpired:
            results.append({"backbone": name, "error": f"timed out after {args.cold_timeout} s"})
            continue
        lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
        if done.returncode or not lines:
            tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
            results.append({"backbone": name, "error": tail[:200]})
        else:
            results.append(json.loads(lines[-1]))
        saved()
        progress(f"cold start {name}: {results[-1]}")


def sizes_as_options(args: argparse.Namespace) -> list[str]:
    return [
        f"--device={args.device}",
        f"--batch={args.batch}",
        f"--image={args.image}",
        f"--widths={','.join(map(str, args.widths))}",
        f"--convs={args.convs}",
        f"--group={args.group}",
        f"--resnet-width={args.resnet_width}",
        f"--resnet-multiplier={args.resnet_multiplier}",
    ]


# ---------------------------------------------------------------- output


def print_report(result: dict[str, Any]) -> None:
    s = result["settings"]
    print(
        f"device {s['device']} ({s['device_name']}), torch {s['torch']}, {s['threads']} CPU "
        f"threads; batch {s['batch']}, {s['image']}x{s['image']} images; "
        f"{s['warmup']} warm-up + {s['steps']} timed steps per cell"
    )
    for name, text in s["backbones"].items():
        print(f"  {name:<17} {text}")

    if result["cold_start"]:
        print("\ncold start (fresh process, as hssl pretrain: build with escnn's init, 1 step)")
        print(
            f"  {'backbone':<17} {'params':>10} {'import s':>9} {'build s':>8} {'setup s':>8} "
            f"{'step s':>7} {'to 1st step s':>14} {'rebuild s':>10}"
        )
        for row in result["cold_start"]:
            if "error" in row:
                print(f"  {row['backbone']:<17} error: {row['error']}")
                continue
            print(
                f"  {row['backbone']:<17} {row['params']:>10,} {row['import_s']:>9.2f} "
                f"{row['build_s']:>8.2f} {row['setup_s']:>8.2f} {row['first_step_s']:>7.2f} "
                f"{row['time_to_first_step_s']:>14.2f} {row['rebuild_no_init_s']:>10.2f}"
            )
        print("  (rebuild s: a second build without initialisation, warm basis caches)")

    rows = result["throughput"]
    if rows:
        columns = [(b, p) for b in s["backbone_names"] for p in s["precisions"]]
        cell = {(r["backbone"], r["precision"], r["method"]): r for r in rows}
        print("\ntraining images/s (one step: the objective's views, forward, backward, update)")
        header = "".join(f"{f'{b} {p}':>22}" for b, p in columns)
        print(f"  {'method':<12}{header}")
        for method in s["methods"]:
            texts = []
            for b, p in columns:
                r = cell.get((b, p, method))
                if r is None:
                    texts.append("")
                elif r["status"] == "ok":
                    texts.append(f"{r['images_per_s']:,.1f}")
                else:
                    texts.append(r["status"])
            print(f"  {method:<12}" + "".join(f"{t:>22}" for t in texts))
        for r in rows:
            if r["status"] != "ok" and r["precision"] == s["precisions"][0]:
                print(f"  {r['status']}: {r['method']} on {r['backbone']}: {r['reason']}")

    if result["ratios"]:
        print(
            f"\nratios (median of {s['rounds']} rounds x {s['ratio_steps']} steps, "
            "sides alternated)"
        )
        for r in result["ratios"]:
            if "error" in r:
                print(f"  {r['name']}: error: {r['error']}")
                continue
            sides = ", ".join(f"{side} {ms:.2f} ms" for side, ms in r["ms"].items())
            print(f"  {r['name']}: {r['ratio']:.3f}   ({sides})")
            extra = {
                k: v
                for k, v in r.items()
                if k.endswith("_over_plain") or k.endswith("_over_exported")
                or k.startswith("hssl_over") or k.endswith("_error")
            }  # fmt: skip
            if extra:
                print("    " + ", ".join(f"{k} {v:.3g}" for k, v in extra.items()))
            print(f"    {r['what']}")
    complete = "" if result.get("complete", True) else " (incomplete: the run was cut off)"
    print(f"\nwall time {result['wall_s']:.1f} s{complete}")


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--batch", type=int, help="images per step (cpu 16, cuda 256)")
    parser.add_argument("--image", type=int, help="image side (32; --quick 16)")
    parser.add_argument("--widths", help="cnn regular fields per stage, e.g. 8,16,32")
    parser.add_argument("--convs", type=int, help="cnn convolutions per stage")
    parser.add_argument("--group", default="rot4", help="group of the escnn backbones")
    parser.add_argument("--resnet-width", choices=["activations", "params"], default="activations")
    parser.add_argument("--resnet-multiplier", type=float, help="ResNet-18 width multiplier")
    parser.add_argument("--warmup", type=int, help="untimed steps before each timing")
    parser.add_argument("--steps", type=int, help="timed steps per table cell")
    parser.add_argument("--rounds", type=int, help="rounds of each ratio (median)")
    parser.add_argument("--ratio-steps", type=int, help="timed steps per side and round")
    parser.add_argument("--backbones", default=DEFAULT_BACKBONES, help=f"of {', '.join(BACKBONES)}")
    parser.add_argument("--methods", default=",".join(sorted(METHOD_CONFIGS)))
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--ratio-precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument(
        "--skip",
        default="",
        help="comma list of parts to skip: cold, table, ratios",
    )
    parser.add_argument("--cold-timeout", type=float, default=600.0)
    parser.add_argument(
        "--cudnn-benchmark", action="store_true", help="let cuDNN pick algorithms by timing"
    )
    parser.add_argument("--save", metavar="FILE", help="keep the JSON object up to date in FILE")
    parser.add_argument("--report", metavar="FILE", help="print the table of a saved --json run")
    parser.add_argument("--cold-start", help=argparse.SUPPRESS)  # the child process's mode
    args = parser.parse_args(argv)

    defaults = SIZES["quick" if args.quick else args.device]
    for key, value in defaults.items():
        if getattr(args, key, None) is None:
            setattr(args, key, value)
    if isinstance(args.widths, str):
        args.widths = [int(w) for w in args.widths.split(",")]
    args.backbones = [b for b in args.backbones.split(",") if b]
    args.methods = [m for m in args.methods.split(",") if m]
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.skip = {part for part in args.skip.split(",") if part}
    unknown = [b for b in args.backbones if b not in BACKBONES]
    unknown += [m for m in args.methods if m not in METHOD_CONFIGS]
    unknown += [p for p in args.precisions if p not in ("fp32", "bf16")]
    unknown += [p for p in args.skip if p not in ("cold", "table", "ratios")]
    if unknown:
        parser.error(f"unknown name(s): {', '.join(unknown)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.report:
        with open(args.report) as saved:
            print_report(json.load(saved))
        return
    device = torch.device(args.device)
    torch.manual_seed(0)
    if args.cold_start:
        print(json.dumps(cold_start(args, device)))
        return
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = args.cudnn_benchmark  # hssl pretrain leaves it off

    started = time.perf_counter()
    bench = Bench(args, device)
    result: dict[str, Any] = {
        "settings": {
            "device": args.device,
            "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "threads": torch.get_num_threads(),
            "batch": args.batch,
            "image": args.image,
            "warmup": args.warmup,
            "steps": args.steps,
            "rounds": args.rounds,
            "ratio_steps": args.ratio_steps,
            "group": args.group,
            "precisions": args.precisions,
            "ratio_precision": args.ratio_precision,
            "methods": args.methods,
            "backbone_names": args.backbones,
            "backbones": {name: describe_backbone(name, args) for name in BACKBONES},
            "optim": OPTIM,
            "cudnn_benchmark": args.cudnn_benchmark,
            "augment": "methods with an optional augment get SimCLR's CIFAR pipeline",
        },
        "cold_start": [],
        "throughput": [],
        "ratios": [],
        "complete": False,
    }

    def saved() -> None:
        """Write what is measured so far to --save (a run cut off still leaves its figures)."""
        result["wall_s"] = round(time.perf_counter() - started, 1)
        if args.save:
            partial = f"{args.save}.partial"
            with open(partial, "w") as sink:
                json.dump(result, sink)
            os.replace(partial, args.save)

    saved()
    if "table" not in args.skip:
        throughput_table(bench, result["throughput"], saved)
    if "ratios" not in args.skip:
        ratios(bench, result["ratios"], saved)
    if "cold" not in args.skip:  # last: child processes, the slowest part per figure
        cold_starts(args, result["cold_start"], saved)
    result["complete"] = True
    saved()
    if args.json:
        print(json.dumps(result))
    else:
        print_report(result)


if __name__ == "__main__":
    main()
