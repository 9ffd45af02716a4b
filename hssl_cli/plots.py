"""Figures, drawn with matplotlib's file-only Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

FLOOR = 1e-9  # log axes cannot show an exact zero


def plot_equivariance(report: dict[str, Any], path: Path, title: str) -> None:
    """Left: invariance error versus rotation angle. Right: per-layer error per group element."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (sweep_axis, layer_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    sweep = report.get("sweep") or {}
    if sweep.get("angles"):
        labels = {
            "model_invariant_err": f"model ({report['model_group']})",
            "trivial_group_invariant_err": "same architecture, trivial group (random init)",
        }
        for key, label in labels.items():
            if key in sweep:
                values = [max(v, FLOOR) for v in sweep[key]]
                sweep_axis.plot(sweep["angles"], values, marker="o", markersize=3, label=label)
        for angle in range(0, 361, 90):
            sweep_axis.axvline(angle, color="grey", linewidth=0.5, linestyle=":")
        sweep_axis.set_yscale("log")
        sweep_axis.legend()
    else:
        sweep_axis.text(
            0.5, 0.5, "no sweep (--angles)", ha="center", transform=sweep_axis.transAxes
        )
    sweep_axis.set_xlabel("rotation angle (degrees)")
    sweep_axis.set_ylabel("relative invariance error of pooled features")
    sweep_axis.set_title("continuous rotation sweep")

    layers = report["layers"]
    elements = [  # the identity is trivially exact: leave it out
        element
        for element in report["elements"][1:]
        if any(layer["rel_err"].get(element) is not None for layer in layers)
    ]
    width = 0.8 / max(1, len(elements))
    for offset, element in enumerate(elements):
        heights = [max(layer["rel_err"].get(element) or 0.0, FLOOR) for layer in layers]
        positions = [i + (offset - (len(elements) - 1) / 2) * width for i in range(len(layers))]
        layer_axis.bar(positions, heights, width=width, label=element)
    layer_axis.set_xticks(range(len(layers)), [layer["name"] for layer in layers], rotation=45)
    layer_axis.set_yscale("log")
    threshold = report["exact_threshold"]  # the measuring precision's rounding level
    layer_axis.axhline(
        threshold, color="black", linewidth=0.8, linestyle="--", label=f"{threshold:g}"
    )
    layer_axis.set_xlabel("layer")
    layer_axis.set_ylabel("relative equivariance error")
    layer_axis.set_title(f"per layer and element ({report['group']})")
    layer_axis.legend(fontsize="small", ncol=2)
    figure.suptitle(f"{title}\nverdict: {report['verdict']}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)
