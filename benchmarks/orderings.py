"""Do the orderings of METHODS §8 hold at small scale? One table, one verdict per ordering.

Runs the CPU-sized recipes behind orderings 1, 2, 3, 5, 6, 7 and 8 over several seeds
on Fashion-MNIST (pretrain, then linear probe, in this process), prints linear-probe
top-1 mean ± std per run and, per ordering, whether it holds. Differences under
``--noise`` points (2 by default, METHODS §6) count as ties. Resumable: a finished run's
``result.json`` is reused, so an interrupted benchmark continues where it stopped.

    python benchmarks/orderings.py                       # 3 seeds, the full table
    python benchmarks/orderings.py --seeds 1 --epochs 1  # a quick smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from hssl_cli.probe import probe_checkpoint
from hssl_cli.recipe import load_recipe
from hssl_cli.training import CHECKPOINT_NAME, METRICS_NAME, pretrain

GROUP_ONLY = "method.augment=null"  # views differ only by a group element
UNSTRUCTURED = "model.structure=unstructured"
RANDOM_INIT = "train.epochs=0"
TASKS = ["rotation4", "hflip", "vflip", "invert", "grayscale", "jigsaw4", "blur4"]


@dataclass(frozen=True)
class Run:
    recipe: str
    overrides: tuple[str, ...] = ()


RUNS: dict[str, Run] = {
    # 1, 2: H-SSL against A-SSL and against its structure-removed twin (C4 CNN).
    "random-init C4 CNN": Run("fashion_rot4.yaml", (RANDOM_INIT,)),
    "H-SSL rotation-only": Run("fashion_rot4_theory.yaml"),
    "A-SSL rotation-only": Run("fashion_rot4_theory_simclr.yaml"),
    "H-SSL + base aug": Run("fashion_rot4.yaml"),
    "SimCLR + base aug + rot": Run("fashion_rot4_simclr.yaml"),
    "H-SSL rotation-only, unstructured": Run("fashion_rot4_theory.yaml", (UNSTRUCTURED,)),
    "H-SSL + base aug, unstructured": Run("fashion_rot4.yaml", (UNSTRUCTURED,)),
    "random-init C4 CNN, unstructured": Run("fashion_rot4.yaml", (RANDOM_INIT, UNSTRUCTURED)),
    # 3: translation fibers of a plain CNN, with and without base augmentations.
    "random-init plain CNN": Run("fashion_translation.yaml", (RANDOM_INIT,)),
    "H-SSL translation-only": Run("fashion_translation.yaml", (GROUP_ONLY,)),
    "H-SSL translation + base aug": Run("fashion_translation.yaml"),
    # 5, 6, 7: E-SSL pretext tasks, explaining away, C4 versus plain backbone.
    **{
        f"E-SSL {task}": Run("fashion_essl_rotation.yaml", (f"method.task={task}",))
        for task in TASKS
    },
    "E-SSL none (random init)": Run("fashion_essl_rotation.yaml", (RANDOM_INIT,)),
    "E-SSL rotation4 add": Run("fashion_essl_rotation.yaml", ("method.explaining_away=add",)),
    "E-SSL rotation4 eliminate": Run(
        "fashion_essl_rotation.yaml", ("method.explaining_away=eliminate",)
    ),
    "E-SSL rotation4, plain CNN": Run("fashion_essl_rotation_plain.yaml"),
    "E-SSL none, plain CNN": Run("fashion_essl_rotation_plain.yaml", (RANDOM_INIT,)),
    # 8: add-ons to SimCLR, each against its own weight-0 baseline (same views and heads).
    "SimCLR (E-SimCLR, weight 0)": Run("fashion_esimclr.yaml", ("method.weight=0",)),
    "E-SimCLR (+0.4 rotation)": Run("fashion_esimclr.yaml"),
    "SimCLR (EquiMod, lambda 0)": Run(
        "fashion_equimod_simclr.yaml", ("method.equivariant_weight=0",)
    ),
    "SimCLR + EquiMod": Run("fashion_equimod_simclr.yaml"),
}


@dataclass
class Stats:
    top1: list[float]
    full_top1: list[float]
    metrics: list[dict[str, float]]
    epoch_seconds: list[float]

    def values(self, feature: str = "invariant") -> list[float]:
        return self.full_top1 if feature == "full" else self.top1

    def mean(self, feature: str = "invariant") -> float:
        return statistics.mean(self.values(feature))

    def std(self, feature: str = "invariant") -> float:
        values = self.values(feature)
        return statistics.stdev(values) if len(values) > 1 else 0.0

    def metric(self, name: str) -> float:
        values = [m[name] for m in self.metrics if name in m]
        return statistics.mean(values) if values else float("nan")

    def text(self, feature: str = "invariant") -> str:
        return f"{self.mean(feature):6.2f} ± {self.std(feature):4.2f}"


def run_one(name: str, run: Run, seed: int, root: Path, budget: list[str]) -> dict:
    folder = root / name.replace(" ", "_").replace(",", "").replace("(", "").replace(")", "")
    folder = folder / f"seed{seed}"
    result_path = folder / "result.json"
    if result_path.exists():
        return json.loads(result_path.read_text())
    overrides = [*budget, *run.overrides, f"seed={seed}"]
    recipe = load_recipe(Path("recipes") / run.recipe, overrides)
    started = time.perf_counter()
    resume = (folder / CHECKPOINT_NAME).exists()
    pretrain(recipe, folder, torch.device("cpu"), resume=resume, quiet=True)
    probe = probe_checkpoint(folder / CHECKPOINT_NAME, [], torch.device("cpu"), quiet=True)
    lines = (
        (folder / METRICS_NAME).read_text().splitlines() if (folder / METRICS_NAME).exists() else []
    )
    records = [json.loads(line) for line in lines]
    result = {
        "run": name,
        "recipe": run.recipe,
        "overrides": overrides,
        "top1": probe["top1"],
        "full_top1": probe["full"]["top1"],
        "knn_top1": probe["knn_top1"],
        "last_epoch": records[-1] if records else {},
        "epoch_seconds": [r["epoch_seconds"] for r in records],
        "seconds": time.perf_counter() - started,
    }
    result_path.write_text(json.dumps(result, indent=1))
    return result


def holds_line(number: str, claim: str, verdict: bool, detail: str) -> str:
    return f"{number:>2}. {'holds         ' if verdict else 'does not hold '} {claim}: {detail}"


def orderings(s: dict[str, Stats], noise: float) -> list[str]:
    def above(a: str, b: str, feature: str = "invariant") -> bool:
        return s[a].mean(feature) > s[b].mean(feature) + noise

    def not_below(a: str, b: str) -> bool:
        return s[a].mean() >= s[b].mean() - noise

    def gain(run: str, baseline: str, feature: str) -> float:
        return s[run].mean(feature) - s[baseline].mean(feature)

    lines = []
    hssl_t = statistics.median(s["H-SSL rotation-only"].epoch_seconds)
    assl_t = statistics.median(s["A-SSL rotation-only"].epoch_seconds)
    gap = abs(s["H-SSL rotation-only"].mean() - s["A-SSL rotation-only"].mean())
    one = (
        gap <= noise
        and hssl_t / assl_t < 0.75
        and above("H-SSL + base aug", "random-init C4 CNN")
        and above("SimCLR + base aug + rot", "random-init C4 CNN")
    )
    lines.append(
        holds_line(
            "1",
            "H-SSL ~ A-SSL rotation-only at about half the epoch time; with base aug both "
            "above random init",
            one,
            f"gap {gap:.2f} pts, epoch time ratio {hssl_t / assl_t:.2f}, base aug "
            f"{s['H-SSL + base aug'].mean():.1f} / {s['SimCLR + base aug + rot'].mean():.1f} "
            f"vs random {s['random-init C4 CNN'].mean():.1f}",
        )
    )
    gains = {
        (variant, feature): (
            gain(f"H-SSL {variant}", "random-init C4 CNN", feature),
            gain(f"H-SSL {variant}, unstructured", "random-init C4 CNN, unstructured", feature),
        )
        for variant in ("+ base aug", "rotation-only")
        for feature in ("invariant", "full")
    }
    two = all(equi > unstructured + noise for equi, unstructured in gains.values())
    lines.append(
        holds_line(
            "2",
            "removing structure hurts H-SSL (gain over the same architecture at random init, "
            "equivariant vs unstructured, invariant | full)",
            two,
            "; ".join(
                f"{variant} {feature} {equi:+.1f} vs {unstructured:+.1f}"
                for (variant, feature), (equi, unstructured) in gains.items()
            ),
        )
    )
    lines.append(
        holds_line(
            "3",
            "H-SSL translation (with base aug) above random init",
            above("H-SSL translation + base aug", "random-init plain CNN"),
            f"{s['H-SSL translation + base aug'].text()} vs "
            f"{s['random-init plain CNN'].text()}; translation-only "
            f"{s['H-SSL translation-only'].text()}",
        )
    )
    ranked = sorted(TASKS, key=lambda t: s[f"E-SSL {t}"].mean(), reverse=True)
    near = [
        t
        for t in ("grayscale", "invert")
        if abs(s[f"E-SSL {t}"].mean() - s["E-SSL none (random init)"].mean()) <= noise
    ]
    best_tie = all(s["E-SSL rotation4"].mean() >= s[f"E-SSL {t}"].mean() - noise for t in TASKS)
    lines.append(
        holds_line(
            "5",
            "rotation is the best pretext task (ties within noise count); grayscale and invert "
            "stay near random init",
            best_tie and len(near) == 2,
            " > ".join(f"{t} {s[f'E-SSL {t}'].mean():.1f}" for t in ranked)
            + f"; random init {s['E-SSL none (random init)'].mean():.1f}"
            + f"; near random init: {', '.join(near) or 'none'}",
        )
    )
    rot = {k: s[f"E-SSL rotation4{k}"].metric("pretext_acc") for k in ("", " add", " eliminate")}
    lines.append(
        holds_line(
            "6",
            "rotation accuracy add > normal > eliminate",
            rot[" add"] > rot[""] > rot[" eliminate"],
            f"pretext accuracy in the last epoch add {rot[' add']:.3f}, normal {rot['']:.3f}, "
            f"eliminate {rot[' eliminate']:.3f}",
        )
    )
    c4, plain = "E-SSL rotation4", "E-SSL rotation4, plain CNN"
    lines.append(
        holds_line(
            "7",
            "C4 backbone beats a plain one for rotation pretraining (full features)",
            above(c4, plain, "full"),
            f"{s[c4].text('full')} vs {s[plain].text('full')}; gain over own random init "
            f"{gain(c4, 'E-SSL none (random init)', 'full'):+.1f} vs "
            f"{gain(plain, 'E-SSL none, plain CNN', 'full'):+.1f}; invariant features "
            f"{s[c4].mean():.1f} vs {s[plain].mean():.1f}",
        )
    )
    eqgain = s["SimCLR + EquiMod"].metric("eqgain")
    eight = (
        not_below("E-SimCLR (+0.4 rotation)", "SimCLR (E-SimCLR, weight 0)")
        and not_below("SimCLR + EquiMod", "SimCLR (EquiMod, lambda 0)")
        and eqgain > 0
    )
    lines.append(
        holds_line(
            "8",
            "SimCLR + rotation and SimCLR + EquiMod not worse than SimCLR; eqgain > 0",
            eight,
            f"E-SimCLR {s['E-SimCLR (+0.4 rotation)'].mean():.2f} vs "
            f"{s['SimCLR (E-SimCLR, weight 0)'].mean():.2f}; EquiMod "
            f"{s['SimCLR + EquiMod'].mean():.2f} vs {s['SimCLR (EquiMod, lambda 0)'].mean():.2f}; "
            f"eqgain {eqgain:+.3f}",
        )
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--limit-train", type=int, default=5000)
    parser.add_argument("--limit-test", type=int, default=2000)
    parser.add_argument("--noise", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("runs/orderings"))
    args = parser.parse_args()
    budget = [
        f"train.epochs={args.epochs}",
        f"data.limit_train={args.limit_train}",
        f"data.limit_test={args.limit_test}",
    ]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    started = time.perf_counter()
    stats: dict[str, Stats] = {}
    for name, run in RUNS.items():
        results = []
        for seed in range(args.seeds):
            results.append(run_one(name, run, seed, args.out, budget))
            print(
                f"  {name} seed {seed}: top1 {results[-1]['top1']:.2f}", file=sys.stderr, flush=True
            )
        stats[name] = Stats(
            [r["top1"] for r in results],
            [r["full_top1"] for r in results],
            [r["last_epoch"] for r in results],
            [t for r in results for t in r["epoch_seconds"]] or [float("nan")],
        )
    width = max(map(len, RUNS))
    print(
        f"Fashion-MNIST, {args.limit_train} train / {args.limit_test} test images, "
        f"{args.epochs} epochs, {args.seeds} seeds; linear-probe top-1 (invariant | full)"
    )
    for name, stat in stats.items():
        print(f"{name:<{width}}  {stat.text()}  | {stat.text('full')}")
    print()
    for line in orderings(stats, args.noise):
        print(line)
    print(f"\nwall time {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
