"""A run's logs: ``metrics.jsonl`` always, TensorBoard scalars on request (read back with
TensorBoard's own reader), with no extra device reads per step."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hssl_cli.training.loop as loop
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import load_recipe
from hssl_cli.run_files import METRICS_NAME, TENSORBOARD_EVENTS_PREFIX
from hssl_cli.training import pretrain
from hssl_cli.training.run_log import RunLog

needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)
DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "digits_rot4.yaml"
CPU = torch.device("cpu")
TENSORBOARD = "train.log=[jsonl,tensorboard]"


def tiny(*overrides: str):
    """96 images in batches of 32: three steps per epoch."""
    small = ["data.limit_train=96", "train.batch_size=32", "model.widths=[2,4]", "train.epochs=2"]
    return load_recipe(DIGITS, [*small, "data.image_size=16", *overrides])


def read_events(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder))
    events.Reload()
    return events


def scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    events = read_events(folder)
    return {
        tag: [(event.step, event.value) for event in events.Scalars(tag)]
        for tag in events.Tags()["scalars"]
    }


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS_NAME).read_text().splitlines()]


def test_train_log_always_holds_jsonl() -> None:
    assert tiny().train.log == ["jsonl"]
    assert tiny("train.log=[tensorboard]").train.log == ["jsonl", "tensorboard"]
    assert tiny("train.log=tensorboard").train.log == ["jsonl", "tensorboard"]
    with pytest.raises(HsslUserError, match="train.log"):
        tiny("train.log=[wandb]")


@needs_tensorboard
def test_tensorboard_gets_every_step_and_every_epoch(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    pretrain(tiny(TENSORBOARD), folder, CPU, quiet=True)
    assert any(path.name.startswith(TENSORBOARD_EVENTS_PREFIX) for path in folder.iterdir())
    logged = scalars(folder)
    jsonl = records(folder)
    assert [record["epoch"] for record in jsonl] == [1, 2]
    for name in ("loss", "pair_acc"):
        steps = logged[f"step/{name}"]
        assert [step for step, _ in steps] == [1, 2, 3, 4, 5, 6]
        assert [step for step, _ in logged[f"epoch/{name}"]] == [1, 2]
        for epoch, record in enumerate(jsonl):
            mean = sum(value for _, value in steps[3 * epoch : 3 * epoch + 3]) / 3
            assert record[name] == pytest.approx(mean, rel=1e-5)  # event files hold float32
            assert logged[f"epoch/{name}"][epoch][1] == pytest.approx(record[name], rel=1e-6)
    assert [step for step, _ in logged["step/lr"]] == [1, 2, 3, 4, 5, 6]
    assert logged["epoch/lr"][-1][1] == pytest.approx(logged["step/lr"][-1][1])
    assert all(value > 0 for _, value in logged["step/images_per_second"])
    assert {"epoch/images_per_second", "epoch/epoch_seconds"} <= set(logged)
    assert read_events(folder).Tags()["tensors"] == ["recipe/text_summary"]


def test_without_tensorboard_no_event_file(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    pretrain(tiny("train.epochs=1"), folder, CPU, quiet=True)
    assert len(records(folder)) == 1
    assert not [path for path in folder.iterdir() if TENSORBOARD_EVENTS_PREFIX in path.name]


@needs_tensorboard
def test_resume_may_turn_tensorboard_on_and_continues_the_steps(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    pretrain(tiny("train.epochs=1"), folder, CPU, quiet=True)
    pretrain(tiny("train.epochs=2", TENSORBOARD), folder, CPU, resume=True, quiet=True)
    logged = scalars(folder)
    assert [step for step, _ in logged["step/loss"]] == [4, 5, 6]
    assert [step for step, _ in logged["epoch/loss"]] == [2]
    assert [record["epoch"] for record in records(folder)] == [1, 2]


@needs_tensorboard
def test_resume_hides_what_an_interrupted_run_logged_past_its_checkpoint(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    pretrain(tiny("train.epochs=1", TENSORBOARD), folder, CPU, quiet=True)
    with RunLog(folder, tiny(TENSORBOARD), start_step=3) as lost:  # as if killed mid-epoch 2
        lost.add_step(4, 0.1, {"loss": torch.tensor(99.0)})
        lost.flush_steps()
    pretrain(tiny("train.epochs=2", TENSORBOARD), folder, CPU, resume=True, quiet=True)
    steps = scalars(folder)["step/loss"]
    assert [step for step, _ in steps] == [1, 2, 3, 4, 5, 6]
    assert 99.0 not in [value for _, value in steps]


@needs_tensorboard
def test_steps_are_copied_to_the_host_once_per_flush(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    reads = []
    for name in ("tolist", "item", "__float__"):
        real = getattr(torch.Tensor, name)

        def counted(self, *args, real=real, name=name):
            reads.append(name)
            return real(self, *args)

        monkeypatch.setattr(torch.Tensor, name, counted)
    with RunLog(tmp_path, tiny(TENSORBOARD)) as log:
        for step in range(1, 6):
            log.add_step(step, 0.5, {"loss": torch.tensor(float(step)), "acc": torch.tensor(0.25)})
        assert reads == []
        log.flush_steps()
        assert reads == ["tolist"]
    monkeypatch.undo()
    logged = scalars(tmp_path)
    assert logged["step/loss"] == [(step, float(step)) for step in range(1, 6)]
    assert logged["step/acc"] == [(step, 0.25) for step in range(1, 6)]


@needs_tensorboard
def test_status_reads_flush_the_steps(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    flushes = []
    real = RunLog.flush_steps
    monkeypatch.setattr(RunLog, "flush_steps", lambda self: (flushes.append(1), real(self)))
    monkeypatch.setattr(loop, "STATUS_SECONDS", 1e9)
    pretrain(tiny(TENSORBOARD), tmp_path / "slow", CPU, quiet=True)
    assert len(flushes) == 2  # the end of each epoch only
    flushes.clear()
    monkeypatch.setattr(loop, "STATUS_SECONDS", 0.0)
    pretrain(tiny(TENSORBOARD), tmp_path / "fast", CPU, quiet=True)
    assert len(flushes) == 6 + 2  # with every status, and at each epoch's end


def block_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tensorboard`` fail, as on a machine without it."""
    for module in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)


def test_tensorboard_missing_is_a_user_error_before_training(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    block_tensorboard(monkeypatch)
    with pytest.raises(HsslUserError, match=r"pip install 'hssl\[tensorboard\]'"):
        pretrain(tiny(TENSORBOARD), tmp_path / "run", CPU, quiet=True)
    assert not (tmp_path / "run").exists()
    pretrain(tiny("train.epochs=1"), tmp_path / "plain", CPU, quiet=True)  # jsonl needs nothing


@needs_tensorboard
def test_two_processes_write_one_event_file(tmp_path: Path) -> None:
    """Rank 0 alone writes; its epoch means are over both ranks, as metrics.jsonl's."""
    out = tmp_path / "two"
    args = ["pretrain", "--recipe", str(DIGITS), "--device", "cpu", "-q", "--out", str(out)]
    args += ["--nproc", "2", "--set=data.limit_train=64", "--set=train.batch_size=32"]
    args += ["--set=model.widths=[2,4]", "--set=train.epochs=1", f"--set={TENSORBOARD}"]
    result = subprocess.run(
        [sys.executable, "-m", "hssl_cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert len([path for path in out.iterdir() if TENSORBOARD_EVENTS_PREFIX in path.name]) == 1
    logged = scalars(out)
    assert [step for step, _ in logged["step/loss"]] == [1, 2]
    assert logged["epoch/loss"][0][1] == pytest.approx(records(out)[0]["loss"], rel=1e-6)
