"""The hssl command end to end on tiny settings: pretrain, probe, resume, user errors."""

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from safetensors import safe_open

from hssl_cli import __version__


@pytest.fixture()
def recipe(write_recipe, tiny_run) -> Path:
    return write_recipe(tiny_run())


def test_version(invoke) -> None:
    result = invoke("--version")
    assert result.exit_code == 0
    assert __version__ in result.output


def test_pretrain_then_probe(invoke, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = invoke("pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet")
    assert result.exit_code == 0, result.output
    checkpoint = out / "checkpoint.safetensors"
    with safe_open(str(checkpoint), "pt") as handle:
        metadata = handle.metadata()
    stored = yaml.safe_load(metadata["recipe"])
    assert stored["data"]["name"] == "digits"
    assert stored["train"]["epochs"] == 2
    assert metadata["epoch"] == "2" and metadata["group"] == "rot4"
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [line["epoch"] for line in lines] == [1, 2]
    assert all(line["loss"] > 0 for line in lines)
    assert yaml.safe_load((out / "recipe.yaml").read_text()) == stored

    probe = invoke("linear-probe", str(checkpoint), "--json")
    assert probe.exit_code == 0, probe.output
    report = json.loads(probe.stdout)
    assert (report["train_size"], report["test_size"], report["epoch"]) == (192, 96, 2)
    for kind in ("invariant", "full"):  # ten classes: chance is 10
        assert 30 < report[kind]["top1"] <= report[kind]["top5"] <= 100
        assert 20 < report[kind]["knn_top1"] <= report[kind]["knn_top5"] <= 100
    assert report["top1"] == report["invariant"]["top1"]

    table = invoke("linear-probe", str(checkpoint))  # the same numbers, as a table
    assert table.exit_code == 0, table.output
    for kind in ("invariant", "full"):
        cells = [f"{report[kind][c]:.2f}" for c in ("top1", "top5", "knn_top1", "knn_top5")]
        row = next(line for line in table.stdout.splitlines() if f" {kind} " in line)
        assert re.findall(r"\d+\.\d\d", row) == cells

    again = invoke("pretrain", "--recipe", str(recipe), "--out", str(out), "--quiet")
    assert again.exit_code == 2 and "--resume" in again.stderr


def test_random_init_checkpoint(invoke, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "init"
    result = invoke(
        "pretrain", "--recipe", str(recipe), "--out", str(out), "--set", "train.epochs=0", "-q"
    )
    assert result.exit_code == 0, result.output
    with safe_open(str(out / "checkpoint.safetensors"), "pt") as handle:
        assert handle.metadata()["epoch"] == "0"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "train.epocs=3"], "train.epochs"),
        (["--set", "train.epochs=many"], "train.epochs"),
        (["--set", "model.group=rot5000flipx"], "unknown group"),
        (["--set", "data.name=imagenet"], "unknown data set"),
        (["--set", "nonsense"], "KEY=VALUE"),
        (["--device", "tpu"], "unknown device"),
    ],
)
def test_user_errors_exit_2_with_one_line(
    invoke, recipe: Path, tmp_path: Path, args, needle
) -> None:
    result = invoke("pretrain", "--recipe", str(recipe), "--out", str(tmp_path / "x"), *args)
    assert result.exit_code == 2
    assert needle in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.output


def test_probe_rejects_files_that_are_not_checkpoints(invoke, tmp_path: Path) -> None:
    text = tmp_path / "notes.md"
    text.write_text("# not a checkpoint\n")
    for path in (text, tmp_path / "missing.safetensors"):
        result = invoke("linear-probe", str(path))
        assert result.exit_code == 2
        assert len(result.stderr.strip().splitlines()) == 1


def test_nan_loss_stops_with_last_checkpoint_intact(
    invoke, recipe: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    from hssl_cli.objectives.hssl import HsslObjective

    original = HsslObjective.forward
    calls = {"n": 0}

    def poisoned(self, backbone, images, labels=None):
        calls["n"] += 1
        values = original(self, backbone, images, labels)
        if calls["n"] > 4:  # 3 steps per epoch: dies in epoch 2
            values["loss"] = values["loss"] * torch.tensor(float("nan"))
        return values

    monkeypatch.setattr(HsslObjective, "forward", poisoned)
    out = tmp_path / "nan"
    result = invoke("pretrain", "--recipe", str(recipe), "--out", str(out), "-q")
    assert result.exit_code == 1
    assert "nan" in result.stderr.lower() and "intact" in result.stderr
    with safe_open(str(out / "checkpoint.safetensors"), "pt") as handle:
        assert handle.metadata()["epoch"] == "1"


def test_ctrl_c_keeps_last_epoch_and_resume_continues(recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "interrupted"
    command = [
        sys.executable,
        "-m",
        "hssl_cli",
        "pretrain",
        "--recipe",
        str(recipe),
        "--out",
        str(out),
        "--quiet",
    ]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [*command, "--set", "train.epochs=200"], stderr=subprocess.PIPE, text=True, env=env
    )
    metrics = out / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (
        metrics.exists() and metrics.read_text().count("\n") >= 1
    ):
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "--resume" in stderr and "Traceback" not in stderr

    with safe_open(str(out / "checkpoint.safetensors"), "pt") as handle:
        done = int(handle.metadata()["epoch"])
    assert 1 <= done < 200
    assert len(metrics.read_text().splitlines()) == done

    resumed = subprocess.run(
        [*command, "--set", f"train.epochs={done + 1}", "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    epochs = [json.loads(line)["epoch"] for line in metrics.read_text().splitlines()]
    assert epochs == list(range(1, done + 2))

    changed = subprocess.run(
        [*command, "--set", "model.widths=[3,4]", "--resume"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert changed.returncode == 2 and "differs" in changed.stderr
