"""Build time of the SESN ResNet-18 (``sesn_resnet18``) beside ``e2resnet18`` and ``resnet18``.

Each backbone is built from a validated recipe, as ``hssl pretrain`` builds it
(``build_backbone(validate_recipe({...}).model, 3)``, with initialisation): ``sesn_resnet18``
on ``scale4`` with ``kernel_size`` 7, ``e2resnet18`` on ``rot4`` and the plain ``resnet18``,
all at the default width. Modules and the libraries they load (escnn, torchvision) are
imported first (reported apart); then each backbone is built once, its first build in this
process (for SESN, the basis computed: ``basis_cache_info()`` shows the misses), and
``--repeats`` more times (the basis cached). The table shows the first build, the median
of the repeats and the parameter count, and the ratios against the other two. The target:
a first SESN build of ResNet-18 size in at most 5 s.

    OMP_NUM_THREADS=2 python benchmarks/sesn_build.py
    OMP_NUM_THREADS=2 python benchmarks/sesn_build.py --repeats 5 --json
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import time
from typing import Any

import torch

from hssl_cli.models import BACKBONES, build_backbone
from hssl_cli.recipe import validate_recipe

TARGET_SECONDS = 5.0
# What each builder imports lazily on its first call, imported (and timed) up front so the
# first build measures building, not importing a library.
LIBRARIES = {"e2resnet18": ["escnn.nn"], "resnet18": ["torchvision.models.resnet"]}


def model_sections(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    return {
        "sesn_resnet18": {
            "backbone": "sesn_resnet18",
            "group": args.scale_group,
            "kernel_size": args.kernel_size,
            "width_multiplier": args.width_multiplier,
        },
        "e2resnet18": {
            "backbone": "e2resnet18",
            "group": "rot4",
            "width_multiplier": args.width_multiplier,
        },
        "resnet18": {
            "backbone": "resnet18",
            "group": "trivial",
            "width_multiplier": args.width_multiplier,
        },
    }


def timed_build(model: dict[str, Any]) -> tuple[float, torch.nn.Module]:
    recipe = validate_recipe({"model": model, "method": {"name": "simclr"}})
    started = time.perf_counter()
    backbone = build_backbone(recipe.model, 3)
    return time.perf_counter() - started, backbone


def parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def measure(sections: dict[str, dict[str, Any]], repeats: int) -> dict[str, Any]:
    from hssl_cli.models.scale_basis import basis_cache_info

    imports = {}
    for name in sections:
        started = time.perf_counter()
        BACKBONES[name].load()
        for module in LIBRARIES.get(name, []):
            importlib.import_module(module)
        imports[name] = time.perf_counter() - started
    cache = {"before": basis_cache_info()}
    rows = {}
    for name, model in sections.items():
        first, backbone = timed_build(model)
        if name == "sesn_resnet18":
            cache["after_first"] = basis_cache_info()
        later = [timed_build(model)[0] for _ in range(repeats)]
        rows[name] = {
            "model": model,
            "import_s": round(imports[name], 3),
            "first_s": round(first, 3),
            "cached_s": round(statistics.median(later), 3),
            "parameters": parameters(backbone),
        }
    cache["after_all"] = basis_cache_info()
    return {"rows": rows, "basis_cache": cache}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scale-group", default="scale4")
    parser.add_argument("--kernel-size", type=int, default=7)
    parser.add_argument("--width-multiplier", type=float, default=1.0)
    parser.add_argument("--repeats", type=int, default=3, help="builds after the first")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(0)
    result = measure(model_sections(args), max(1, args.repeats))
    result["settings"] = {
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "repeats": args.repeats,
    }
    if args.json:
        print(json.dumps(result))
        return
    rows = result["rows"]
    print(
        f"backbone build on cpu ({torch.get_num_threads()} threads), default recipe, "
        f"width_multiplier {args.width_multiplier}; cached: median of {args.repeats} later builds"
    )
    print(f"  {'backbone':<14} {'import s':>9} {'first s':>9} {'cached s':>9} {'params':>12}")
    for name, row in rows.items():
        print(
            f"  {name:<14} {row['import_s']:9.3f} {row['first_s']:9.3f} {row['cached_s']:9.3f}"
            f" {row['parameters']:>12,}"
        )
    sesn = rows["sesn_resnet18"]
    for other in ("e2resnet18", "resnet18"):
        base = rows[other]
        print(
            f"  sesn_resnet18 / {other}: first build {sesn['first_s'] / base['first_s']:.2f}x"
            f", cached {sesn['cached_s'] / base['cached_s']:.2f}x"
            f", params {sesn['parameters'] / base['parameters']:.3f}x"
        )
    cache = result["basis_cache"]
    print(f"  basis cache: before {cache['before']}")
    print(f"               after the first sesn build {cache['after_first']}")
    print(f"               at the end {cache['after_all']}")
    verdict = "meets" if sesn["first_s"] <= TARGET_SECONDS else "MISSES"
    print(f"  target: first sesn_resnet18 build <= {TARGET_SECONDS:g} s: {verdict}")


if __name__ == "__main__":
    main()
