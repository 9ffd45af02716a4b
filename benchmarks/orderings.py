"""Do the orderings of docs/methods.md hold at small scale? One table, one verdict per ordering.

Runs the CPU-sized recipes behind orderings 1, 2, 3, 5, 6, 7 and 8 over several seeds
on Fashion-MNIST (pretrain, then linear probe), prints linear-probe top-1 mean ± std per
run (invariant | full features) and, per ordering, whether it holds. Differences under
``--noise`` points (2 by default; docs/methods.md, Evaluation) count as ties. The runs
execute through ``hssl ablate``'s runner (one named axis, in this process), so the
benchmark resumes the same way: a finished run's ``probe.json`` is reused.

Which feature each ordering reads. A C4 model's "invariant" feature is group-pooled, so
blind to orientation, which Fashion-MNIST's labels use (shoes point one way), while a
plain CNN's is only spatially pooled: comparing them across architectures measures
pooling, not learning. So comparisons within one architecture (1, 3, 5, 6, 8) read the
invariant feature (docs/methods.md, Evaluation), ordering 7 (C4 against plain) reads the full
feature (spatially pooled, group axis kept: what a plain ResNet's probe sees), and
ordering 2 compares each architecture's gain over its own random-init encoder.

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

from hssl_cli.ablation.results import collect_rows
from hssl_cli.ablation.runner import Outcome, execute_study, run_folder
from hssl_cli.ablation.study import Axis, Level, Study, validate_runs
from hssl_cli.run_files import METRICS_NAME

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
SETTING = "setting"

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


def orderings_study(seeds: int, budget: list[str]) -> Study:
    """Every run above as one level of a named axis: ``hssl ablate``'s runner executes it."""
    levels = tuple(
        Level(label=name, overrides=run.overrides, recipe=RECIPES / run.recipe)
        for name, run in RUNS.items()
    )
    return Study(
        name="orderings",
        recipe=RECIPES / "fashion_rot4.yaml",
        axes=[Axis(SETTING, levels)],
        seeds=list(range(seeds)),
        overrides=budget,
    )


def epoch_records(folder: Path) -> list[dict]:
    path = folder / METRICS_NAME
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


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
    started = time.perf_counter()
    study = orderings_study(args.seeds, budget)
    runs = validate_runs(study)

    def report(outcome: Outcome) -> None:
        line = f"  {outcome.run.name}: {outcome.status} {outcome.error}"
        print(line, file=sys.stderr, flush=True)

    execute_study(runs, args.out, "cpu", report=report)
    rows = collect_rows(study, args.out)
    failed = [row for row in rows if row["status"] != "done"]
    if failed:
        sys.exit(f"{len(failed)} runs failed, first {failed[0]['run']}: {failed[0]['error']}")
    stats: dict[str, Stats] = {}
    for run, row in zip(runs, rows, strict=True):
        records = epoch_records(run_folder(args.out, run))
        stat = stats.setdefault(row[SETTING], Stats([], [], [], []))
        stat.top1.append(row["top1"])
        stat.full_top1.append(row["full_top1"])
        stat.metrics.append(records[-1] if records else {})
        stat.epoch_seconds.extend(record["epoch_seconds"] for record in records)
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
