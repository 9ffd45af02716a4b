"""Collect an ablation's runs into rows (results.csv) and grid points (summary.md).

Rows are read back from the run folders, not from memory, so the files describe every
run of the study however many invocations it took to finish.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from hssl_cli.ablation.points import (
    METRIC_TITLES,
    PointSummary,
    summarise,
    summary_columns,
)
from hssl_cli.ablation.runner import read_probe, run_folder
from hssl_cli.ablation.study import METRICS, Study
from hssl_cli.ablation.summary_plot import plot_summary
from hssl_cli.io import atomic_write_json, atomic_write_text
from hssl_cli.run_files import (
    FAILURE_NAME,
    METRICS_NAME,
    PLOT_NAME,
    RESULTS_NAME,
    STUDY_NAME,
    SUMMARY_NAME,
    TIMING_NAME,
)


def _read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _final_loss(folder: Path) -> float | None:
    try:
        lines = (folder / METRICS_NAME).read_text().splitlines()
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
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = collect_rows(study, out_dir)
    summaries = summarise(study, rows)
    atomic_write_text(out_dir / RESULTS_NAME, results_csv(rows))
    atomic_write_text(out_dir / SUMMARY_NAME, summary_markdown(study, summaries))
    atomic_write_json(out_dir / STUDY_NAME, study.to_dict(), indent=1)
    plot_summary(study, summaries, out_dir / PLOT_NAME)
    return rows, summaries
