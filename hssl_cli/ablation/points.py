"""Grid points: an ablation's runs summarised over seeds, and the names of the metrics.

Shared by the results files (``results``) and the figure (``summary_plot``).
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from hssl_cli.ablation.study import METRICS, Study

SUMMARY_METRICS = ("top1", "full_top1", "knn_top1")
METRIC_TITLES = {
    "top1": "linear top-1 (invariant)",
    "top5": "linear top-5 (invariant)",
    "knn_top1": "kNN top-1 (invariant)",
    "knn_top5": "kNN top-5 (invariant)",
    "full_top1": "linear top-1 (full)",
    "full_top5": "linear top-5 (full)",
    "full_knn_top1": "kNN top-1 (full)",
    "full_knn_top5": "kNN top-5 (full)",
}


@dataclass
class PointSummary:
    """One grid point over its finished seeds."""

    levels: dict[str, str]
    runs: int
    done: int
    mean: dict[str, float]
    std: dict[str, float]
    wall_seconds: float

    def text(self, metric: str) -> str:
        if not self.done:
            return "-"
        return f"{self.mean[metric]:.2f} ± {self.std[metric]:.2f}"


def summarise(study: Study, rows: list[dict[str, Any]]) -> list[PointSummary]:
    """Mean ± sample std over seeds per grid point, in the grid's order (0 std for one seed)."""
    points: dict[tuple[str, ...], list[dict[str, Any]]] = {}
    for row in rows:
        points.setdefault(tuple(row[axis.name] for axis in study.axes), []).append(row)
    summaries = []
    for key, group in points.items():
        done = [row for row in group if row["status"] == "done"]
        mean, std = {}, {}
        for metric in METRICS:
            values = [float(row[metric]) for row in done if row[metric] is not None]
            mean[metric] = statistics.mean(values) if values else math.nan
            std[metric] = statistics.stdev(values) if len(values) > 1 else 0.0
        seconds = [float(row["wall_seconds"]) for row in done if row["wall_seconds"] is not None]
        summaries.append(
            PointSummary(
                levels=dict(zip([axis.name for axis in study.axes], key, strict=True)),
                runs=len(group),
                done=len(done),
                mean=mean,
                std=std,
                wall_seconds=statistics.mean(seconds) if seconds else math.nan,
            )
        )
    return summaries


def summary_columns(study: Study) -> list[str]:
    return list(dict.fromkeys([study.metric, *SUMMARY_METRICS]))
