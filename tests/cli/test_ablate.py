"""``hssl ablate`` end to end on a tiny grid: real pretrain and probe child processes."""

import csv
import json
import os
import shlex
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

CHANCE = 10.0  # digits: ten balanced classes

TINY = {
    "data": {"name": "digits", "limit_train": 128, "limit_test": 64, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 3]},
    "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
    "train": {"epochs": 1, "batch_size": 64},
    "probe": {"steps": 10, "knn_k": 10},
}


@pytest.fixture()
def recipe(write_recipe) -> Path:
    return write_recipe(TINY)


def test_tiny_grid_writes_results_and_resumes(invoke, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "ab"
    args = ["ablate", "--recipe", str(recipe), "--grid", "model.structure=equivariant,unstructured"]
    args += ["--seeds", "2", "--set", "train.epochs=1", "--out", str(out), "--device", "cpu"]
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    with (out / "results.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 4 and {row["status"] for row in rows} == {"done"}
    for row in rows:  # each row is its run's probe report, and the probe learned something
        probe = json.loads((out / "runs" / row["run"] / "probe.json").read_text())
        assert (
            float(row["top1"]) == probe["top1"] and float(row["full_top1"]) == probe["full"]["top1"]
        )
        assert CHANCE < probe["top1"] <= 100 and probe["test_size"] == 64
    assert all(float(row["wall_seconds"]) > 0 for row in rows)
    summary = (out / "summary.md").read_text()
    for structure in ("equivariant", "unstructured"):  # mean ± sample std over the two seeds
        top1 = [float(row["top1"]) for row in rows if row["model.structure"] == structure]
        cell = f"{statistics.mean(top1):.2f} ± {statistics.stdev(top1):.2f}"
        assert f"| {structure} | 2/2 | {cell} |" in summary
    assert (out / "summary.png").stat().st_size > 1000
    logs = {row["run"]: (out / "runs" / row["run"] / "log.txt").read_text() for row in rows}
    assert all("hssl pretrain" in log for log in logs.values())

    again = invoke(*args, "--json")
    assert again.exit_code == 0, again.output
    report = json.loads(again.stdout)
    assert [row["status"] for row in report["runs"]] == ["done"] * 4
    assert [row["top1"] for row in report["runs"]] == [float(row["top1"]) for row in rows]
    assert len(report["summary"]) == 2
    for name, log in logs.items():  # nothing ran a second time
        assert (out / "runs" / name / "log.txt").read_text() == log


def test_failed_run_is_recorded_the_others_go_on(invoke, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "fail"
    # batch 512 > 128 images: pretrain refuses; the recipe validates, so the run starts.
    args = ["ablate", "--recipe", str(recipe), "--grid", "train.batch_size=512,64"]
    args += ["--out", str(out), "--device", "cpu", "--quiet"]
    result = invoke(*args)
    assert result.exit_code == 1
    assert "1 of 2 runs failed" in result.stderr and "train.batch_size" in result.stderr
    with (out / "results.csv").open() as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    assert rows["batch_size=64_seed0"]["status"] == "done"
    assert rows["batch_size=512_seed0"]["status"] == "failed"
    assert "train.batch_size" in rows["batch_size=512_seed0"]["error"]
    assert "| 512 | 0/1 | - |" in (out / "summary.md").read_text()
    done_log = (out / "runs" / "batch_size=64_seed0" / "log.txt").read_text()

    retry = invoke(*args)  # the failed run is tried again, the finished one is not
    assert retry.exit_code == 1
    assert (out / "runs" / "batch_size=64_seed0" / "log.txt").read_text() == done_log
    assert (out / "runs" / "batch_size=512_seed0" / "log.txt").read_text().count("$ hssl") == 2


def test_parallel_jobs_run_child_processes(invoke, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "jobs"
    result = invoke(
        "ablate", "--recipe", str(recipe), "--grid", "optim.lr=0.01,0.001",
        "--out", str(out), "--device", "cpu", "--jobs", "2", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    with (out / "results.csv").open() as handle:
        rows = {row["run"]: row for row in csv.DictReader(handle)}
    for name in ("lr=0.01_seed0", "lr=0.001_seed0"):
        log = (out / "runs" / name / "log.txt").read_text()
        assert "$ hssl pretrain" in log and "(in process)" not in log
        probe = json.loads((out / "runs" / name / "probe.json").read_text())
        assert CHANCE < probe["top1"] <= 100 and float(rows[name]["top1"]) == probe["top1"]


def test_dry_run_commands_run_as_printed(invoke, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "dry"
    result = invoke(
        "ablate", "--recipe", str(recipe), "--grid", "optim.lr=0.01,0.001",
        "--out", str(out), "--device", "cpu", "--dry-run",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 4 and not out.exists()
    assert lines[0].startswith("hssl pretrain") and lines[1].startswith("hssl linear-probe")
    hssl = Path(sys.executable).parent / "hssl"
    env = {**os.environ, "PATH": f"{hssl.parent}{os.pathsep}{os.environ['PATH']}"}
    for line in lines[:2]:
        subprocess.run(["bash", "-c", line], check=True, env=env)
    folder = out / "runs" / "lr=0.01_seed0"
    probe = json.loads((folder / "probe.json").read_text())
    assert probe["checkpoint"] == str(folder / "checkpoint.safetensors")
    assert CHANCE < probe["top1"] <= 100
    # The printed probe command wrote what probing that checkpoint reports.
    again = invoke("linear-probe", probe["checkpoint"], "--json", "--device", "cpu")
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout) == probe
    rest = invoke(
        "ablate", "--recipe", str(recipe), "--grid", "optim.lr=0.01,0.001",
        "--out", str(out), "--dry-run",
    )  # fmt: skip
    assert len(rest.stdout.strip().splitlines()) == 2  # the finished run is left out
    assert shlex.split(rest.stdout.splitlines()[0])[:2] == ["hssl", "pretrain"]


@pytest.mark.parametrize(
    "extra, fragment",
    [
        (["--grid", "model.nosuchkey=1,2"], "model.nosuchkey"),
        (["--grid", "model.structure=equivariant,sideways"], "model.structure"),
        (["--grid", "seed=1,2"], "--seeds"),
        (["--metric", "accuracy"], "unknown metric"),
        (["--jobs", "0"], "--jobs must be 1 to 256 (got 0)"),
        (["--seeds", "0"], "--seeds must be 1 to 1000 (got 0)"),
        (["--seeds", "1000000000000"], "--seeds must be 1 to 1000"),
        (["--jobs", "-3"], "--jobs must be 1 to 256 (got -3)"),
    ],
)
def test_bad_axis_exits_2_before_any_run(
    invoke, recipe: Path, tmp_path: Path, extra: list[str], fragment: str
) -> None:
    out = tmp_path / "bad"
    result = invoke("ablate", "--recipe", str(recipe), "--out", str(out), *extra)
    assert result.exit_code == 2
    assert fragment in result.stderr and "Traceback" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1
    assert not out.exists()


def test_needs_exactly_one_of_file_and_recipe(invoke, recipe: Path) -> None:
    result = invoke("ablate")
    assert result.exit_code == 2 and "--recipe" in result.stderr
    result = invoke("ablate", "recipes/ablations/structure_cpu.yaml", "--recipe", str(recipe))
    assert result.exit_code == 2
    result = invoke("ablate", "--recipe", "nowhere.yaml", "--grid", "optim.lr=1,2")
    assert result.exit_code == 2 and "not found" in result.stderr
