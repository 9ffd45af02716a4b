"""The ablation figure: grouped bars with error bars, or lines over a numeric axis."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from hssl_cli.ablation.points import METRIC_TITLES, PointSummary
from hssl_cli.io import atomic_path

if TYPE_CHECKING:
    from hssl_cli.ablation.study import Axis, Study


def _varying(study: Study) -> list[Axis]:
    return [axis for axis in study.axes if len(axis.levels) > 1]


def plot_summary(study: Study, summaries: list[PointSummary], path: Path) -> None:
    """One axis: bars. Two: bars grouped by the first, one colour per level of the second.
    A numeric axis goes on x as a line (one line per level of the other axis). More than
    two varying axes: one bar per grid point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metric = study.metric
    axes = _varying(study)
    numeric = [axis for axis in axes if axis.numeric]
    figure, plot = plt.subplots(figsize=(max(6.0, 1.1 * len(summaries) + 2), 4.5))

    def point(levels: dict[str, str]) -> PointSummary | None:
        for summary in summaries:
            if all(summary.levels[name] == label for name, label in levels.items()):
                return summary
        return None

    def value(summary: PointSummary | None) -> tuple[float, float]:
        if summary is None or not summary.done:
            return math.nan, 0.0
        return summary.mean[metric], summary.std[metric]

    if numeric and len(axes) <= 2:
        x_axis = numeric[0]
        others = [axis for axis in axes if axis is not x_axis]
        series = [(None, None)] if not others else [(others[0], lv) for lv in others[0].levels]
        for other, other_level in series:
            means, stds = [], []
            for level in x_axis.levels:
                levels = {x_axis.name: level.label}
                if other is not None and other_level is not None:
                    levels[other.name] = other_level.label
                mean, std = value(point(levels))
                means.append(mean)
                stds.append(std)
            label = f"{other.name}={other_level.label}" if other and other_level else None
            xs = [float(level.value) for level in x_axis.levels]
            plot.errorbar(xs, means, yerr=stds, marker="o", capsize=4, label=label)
        plot.set_xticks(
            [float(level.value) for level in x_axis.levels], [lv.label for lv in x_axis.levels]
        )
        plot.set_xlabel(x_axis.name)
        if others:
            plot.legend(fontsize="small")
    elif 1 <= len(axes) <= 2:
        groups = axes[0].levels
        bars = axes[1].levels if len(axes) == 2 else (None,)
        width = 0.8 / len(bars)
        for offset, bar in enumerate(bars):
            means, stds = [], []
            for group in groups:
                levels = {axes[0].name: group.label}
                if bar is not None:
                    levels[axes[1].name] = bar.label
                mean, std = value(point(levels))
                means.append(mean)
                stds.append(std)
            positions = [i + (offset - (len(bars) - 1) / 2) * width for i in range(len(groups))]
            label = f"{axes[1].name}={bar.label}" if bar is not None else None
            plot.bar(positions, means, width=width, yerr=stds, capsize=4, label=label)
        labels = [group.label for group in groups]
        crowded = sum(map(len, labels)) > 60
        plot.set_xticks(
            range(len(groups)),
            labels,
            rotation=30 if crowded else 0,
            ha="right" if crowded else "center",
        )
        plot.set_xlabel(axes[0].name)
        if len(axes) == 2:
            plot.legend(fontsize="small")
    else:
        labels = [
            "\n".join(summary.levels[axis.name] for axis in axes) or "recipe"
            for summary in summaries
        ]
        values = [value(summary) for summary in summaries]
        plot.bar(range(len(summaries)), [v[0] for v in values], yerr=[v[1] for v in values])
        plot.set_xticks(range(len(summaries)), labels, fontsize="small")
        plot.set_xlabel(" / ".join(axis.name for axis in axes))
    finite = [s.mean[metric] - s.std[metric] for s in summaries if s.done]
    if finite and not numeric:  # bars: start near the lowest bar so differences show
        top = max(s.mean[metric] + s.std[metric] for s in summaries if s.done)
        plot.set_ylim(max(0.0, min(finite) - 0.15 * (top - min(finite) + 1)), top + 1)
    plot.set_ylabel(f"{METRIC_TITLES[metric]} (%)")
    seeds = len(study.seeds)
    plot.set_title(f"{study.name}: mean ± std over {seeds} seed{'s' if seeds > 1 else ''}")
    plot.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    try:
        with atomic_path(path) as temporary:
            figure.savefig(temporary, format="png", dpi=120)
    finally:
        plt.close(figure)
