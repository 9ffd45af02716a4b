"""Skip-if-done resume, failure isolation and the result files, with a stand-in executor
(the real pretrain + probe pair is exercised end to end in tests/cli/test_ablate.py)."""

import csv
import json
from pathlib import Path

import pytest

from hssl_cli.ablation.points import summarise
from hssl_cli.ablation.results import collect_rows, write_results
from hssl_cli.ablation.runner import (
    Interrupted,
    RunFailed,
    execute_study,
    job_environments,
    read_probe,
    run_folder,
    shell_lines,
)
from hssl_cli.ablation.study import Run, Study, parse_grid_option
from hssl_cli.run_files import PROBE_NAME, RESULTS_NAME, RUNS_FOLDER, SUMMARY_NAME, TIMING_NAME

RECIPES = Path(__file__).parents[2] / "recipes"


def make_study() -> Study:
    return Study(
        name="t",
        recipe=RECIPES / "digits_rot4.yaml",
        axes=[parse_grid_option("model.structure=equivariant,unstructured")],
        seeds=[0, 1],
    )


def report_for(run: Run) -> dict:
    """A probe report whose numbers encode the run, so aggregation can be checked exactly."""
    base = 80.0 if run.levels["model.structure"] == "equivariant" else 60.0
    top1 = base + 2 * run.seed
    block = {"top1": top1, "top5": 99.0, "knn_top1": top1 - 1, "knn_top5": 98.0}
    return {**block, "invariant": block, "full": {**block, "top1": top1 + 5}}


class Recorder:
    """Stands in for execute_run: writes a probe report, or fails / interrupts on request."""

    def __init__(self, fail: set[str] = frozenset(), interrupt_at: int | None = None) -> None:
        self.calls: list[str] = []
        self.fail = fail
        self.interrupt_at = interrupt_at

    def __call__(self, run: Run, folder: Path, device: str, env: dict) -> None:
        self.calls.append(run.name)
        if self.interrupt_at is not None and len(self.calls) == self.interrupt_at:
            (folder / PROBE_NAME).write_text('{"top1": 1')  # cut short mid-write
            raise Interrupted()
        if run.name in self.fail:
            raise RunFailed("error: bad recipe value for 'optim.lr'")
        (folder / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "loss": 1.5}) + "\n")
        (folder / PROBE_NAME).write_text(json.dumps(report_for(run)))


def test_interrupted_ablation_resumes_without_repeating(tmp_path: Path) -> None:
    runs = make_study().runs()
    first = Recorder(interrupt_at=2)
    with pytest.raises(Interrupted):
        execute_study(runs, tmp_path, "cpu", 1, execute=first)
    assert first.calls == [runs[0].name, runs[1].name]
    assert read_probe(run_folder(tmp_path, runs[0])) is not None
    assert read_probe(run_folder(tmp_path, runs[1])) is None  # a truncated report is not done

    second = Recorder()
    outcomes = execute_study(runs, tmp_path, "cpu", 1, execute=second)
    assert second.calls == [run.name for run in runs[1:]]
    assert [o.status for o in outcomes] == ["skipped", "done", "done", "done"]

    third = Recorder()
    execute_study(runs, tmp_path, "cpu", 1, execute=third)
    assert third.calls == []


def test_a_failed_run_is_recorded_and_the_others_go_on(tmp_path: Path) -> None:
    study = make_study()
    runs = study.runs()
    bad = runs[1].name
    outcomes = execute_study(runs, tmp_path, "cpu", 1, execute=Recorder(fail={bad}))
    assert [o.status for o in outcomes] == ["done", "failed", "done", "done"]
    assert "optim.lr" in outcomes[1].error
    rows = collect_rows(study, tmp_path)
    assert [row["status"] for row in rows] == ["done", "failed", "done", "done"]
    assert rows[1]["top1"] is None and "optim.lr" in rows[1]["error"]

    retry = Recorder()
    execute_study(runs, tmp_path, "cpu", 1, execute=retry)
    assert retry.calls == [bad]  # only the failed run is retried
    assert collect_rows(study, tmp_path)[1]["status"] == "done"
    assert collect_rows(study, tmp_path)[1]["error"] == ""


def test_parallel_jobs_run_every_pending_run_once(tmp_path: Path) -> None:
    runs = make_study().runs()
    recorder = Recorder()
    outcomes = execute_study(runs, tmp_path, "cpu", 3, execute=recorder)
    assert sorted(recorder.calls) == sorted(run.name for run in runs)
    assert {o.status for o in outcomes} == {"done"}


def test_cpu_jobs_share_the_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    environments = job_environments(2, "cpu")
    assert [env["OMP_NUM_THREADS"] for env in environments] == ["4", "4"]
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert [env["OMP_NUM_THREADS"] for env in job_environments(4, "cpu")] == ["1"] * 4


def test_results_csv_and_summary(tmp_path: Path) -> None:
    study = make_study()
    execute_study(study.runs(), tmp_path, "cpu", 1, execute=Recorder())
    rows, summaries = write_results(study, tmp_path)
    with (tmp_path / RESULTS_NAME).open() as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 4
    assert {"run", "model.structure", "seed", "status", "top1", "full_top1", "knn_top5"} <= set(
        table[0]
    )
    assert [float(r["top1"]) for r in table] == [80.0, 82.0, 60.0, 62.0]
    assert [float(r["full_top1"]) for r in table] == [85.0, 87.0, 65.0, 67.0]
    assert all(float(r["final_loss"]) == 1.5 for r in table)
    timings = [
        json.loads((tmp_path / RUNS_FOLDER / r["run"] / TIMING_NAME).read_text()) for r in table
    ]
    assert [float(r["wall_seconds"]) for r in table] == [t["wall_seconds"] for t in timings]

    equivariant, unstructured = summaries
    assert equivariant.levels == {"model.structure": "equivariant"}
    assert equivariant.done == 2 and equivariant.mean["top1"] == pytest.approx(81.0)
    assert equivariant.std["top1"] == pytest.approx(2**0.5)  # sample std of 80, 82
    assert unstructured.mean["full_top1"] == pytest.approx(66.0)

    markdown = (tmp_path / SUMMARY_NAME).read_text()
    assert "| equivariant | 2/2 | 81.00 ± 1.41 | 86.00 ± 1.41 | 80.00 ± 1.41 |" in markdown
    assert "| unstructured | 2/2 | 61.00 ± 1.41 |" in markdown
    assert (tmp_path / "summary.png").stat().st_size > 1000


def test_summary_of_a_point_with_no_finished_seed(tmp_path: Path) -> None:
    study = make_study()
    runs = study.runs()
    failing = {run.name for run in runs if run.levels["model.structure"] == "unstructured"}
    execute_study(runs, tmp_path, "cpu", 1, execute=Recorder(fail=failing))
    summaries = summarise(study, collect_rows(study, tmp_path))
    assert summaries[1].done == 0 and summaries[1].text("top1") == "-"
    _, points = write_results(study, tmp_path)
    assert "| unstructured | 0/2 | - |" in (tmp_path / SUMMARY_NAME).read_text()
    assert points[0].done == 2


def test_dry_run_lines_are_the_executed_commands(tmp_path: Path) -> None:
    run = make_study().runs()[0]
    pretrain, probe = shell_lines(run, tmp_path / "r", "cpu")
    assert pretrain.startswith("hssl pretrain --recipe ")
    assert "--set model.structure=equivariant --set seed=0" in pretrain
    assert "--resume" in pretrain  # a re-submitted job continues
    assert probe.endswith(f"--json > {tmp_path / 'r' / PROBE_NAME}")
