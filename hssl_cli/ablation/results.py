"""Collect an ablation's runs into rows (results.csv) and grid points (summary.md).

Rows are read back from the run folders, not from memory, so the files describe every
run of the study however many invocations it took to finish.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hssl_cli.ablation.runner import (
    FAILURE_NAME,
    TIMING_NAME,
    read_probe,
    run_folder,
    write_atomically,
)
from hssl_cli.ablation.study import METRICS, Study

RESULTS_NAME = "results.csv"
SUMMARY_NAME = "summary.md"
PLOT_NAME = "summary.png"
STUDY_NAME = "ablation.json"
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


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _final_loss(folder: Path) -> float | None:
    try:
        lines = (folder / "metrics.jsonl").read_text().splitlines()
        return float(json.loads(lines[-1])["loss"])
    except (OSError, ValueError, IndexError, KeyError, TypeError):
        return None


def probe_metric(report: dict[str, Any], metric: str) -> float | None:
    """``top1`` from the report's invariant block, ``full_top1`` from its full block."""
    if metric.startswith("full_"):
        return report.get("full", {}).get(metric.removeprefix("full_"))
    return report.get(metric)


def collect_rows(study: Study, out_dir: Path) -> list[dict[str, Any]]:
    """One row per run: axes, seed, status, every probe metric, final loss, wall time, error."""
    rows = []
    for run in study.runs():
        folder = run_folder(out_dir, run)
        probe = read_probe(folder)
        failure = _read_json(folder / FAILURE_NAME)
        row: dict[str, Any] = {"run": run.name, **run.levels, "seed": run.seed}
        row["status"] = "done" if probe else ("failed" if failure else "pending")
        for metric in METRICS:
            row[metric] = probe_metric(probe, metric) if probe else None
        row["final_loss"] = _final_loss(folder) if probe else None
        timing = _read_json(folder / TIMING_NAME) if probe else {}
        row["wall_seconds"] = timing.get("wall_seconds")
        row["error"] = "" if probe else failure.get("error", "")
        rows.append(row)
    return rows


def results_csv(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(rows[0]) if rows else ["run"])
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    return buffer.getvalue()


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


def summary_markdown(study: Study, summaries: list[PointSummary]) -> str:
    metrics = summary_columns(study)
    axes = [axis.name for axis in study.axes]
    header = [*axes, "seeds done", *(METRIC_TITLES[m] for m in metrics), "wall s"]
    lines = [
        f"# Ablation {study.name}" + (f": {study.description}" if study.description else ""),
        "",
        f"Recipe `{study.recipe}`, seeds {', '.join(map(str, study.seeds))}"
        + (f", with `--set {' '.join(study.overrides)}`" if study.overrides else "")
        + ". Mean ± std over seeds.",
        "",
        "| " + " | ".join(header) + " |",
        "|" + "|".join("---" for _ in header) + "|",
    ]
    for point in summaries:
        cells = [
            *(point.levels[a] for a in axes),
            f"{point.done}/{point.runs}",
            *(point.text(m) for m in metrics),
            f"{point.wall_seconds:.0f}" if point.done else "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results(study: Study, out_dir: Path) -> tuple[list[dict[str, Any]], list[PointSummary]]:
    """Write results.csv, summary.md, summary.png and the resolved study; return rows, points."""
    from hssl_cli.ablation.summary_plot import plot_summary

    out_dir.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(study, out_dir)
    summaries = summarise(study, rows)
    write_atomically(out_dir / RESULTS_NAME, results_csv(rows))
    write_atomically(out_dir / SUMMARY_NAME, summary_markdown(study, summaries))
    write_atomically(out_dir / STUDY_NAME, json.dumps(study.to_dict(), indent=1))
    plot_summary(study, summaries, out_dir / PLOT_NAME)
    return rows, summaries
