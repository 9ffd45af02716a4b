"""``train.log: [jsonl, tensorboard]`` from the command line: pretrain and ablate runs write
event files TensorBoard reads back, one run per folder."""

import importlib.util
import sys
from pathlib import Path

import pytest

from hssl_cli.run_files import RUNS_FOLDER

TENSORBOARD = "train.log=[jsonl,tensorboard]"
TINY = {
    "data": {"name": "digits", "limit_train": 128, "limit_test": 64, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 3]},
    "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
    "train": {"epochs": 2, "batch_size": 64},
    "probe": {"steps": 10, "knn_k": 10},
}
needs_tensorboard = pytest.mark.skipif(
    importlib.util.find_spec("tensorboard") is None, reason="tensorboard is not installed"
)


@pytest.fixture()
def recipe(write_recipe) -> Path:
    return write_recipe(TINY)


def block_tensorboard(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``import tensorboard`` fail, as on a machine without it."""
    for module in ("tensorboard", "torch.utils.tensorboard"):
        monkeypatch.setitem(sys.modules, module, None)


@needs_tensorboard
def test_pretrain_writes_event_files_tensorboard_reads(invoke, recipe, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "run"
    result = invoke("pretrain", "--recipe", str(recipe), "--out", str(out), "--set", TENSORBOARD)
    assert result.exit_code == 0, result.output
    events = EventAccumulator(str(out))
    events.Reload()
    assert [event.step for event in events.Scalars("step/loss")] == [1, 2, 3, 4]
    assert [event.step for event in events.Scalars("epoch/loss")] == [1, 2]
    assert {"step/lr", "step/images_per_second", "epoch/pair_acc"} <= set(events.Tags()["scalars"])


@needs_tensorboard
def test_ablate_runs_compare_under_one_logdir(invoke, recipe, tmp_path) -> None:
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    out = tmp_path / "study"
    args = ["ablate", "--recipe", str(recipe), "--grid", "model.structure=equivariant,unstructured"]
    args += ["--set", "train.epochs=1", "--set", TENSORBOARD, "--out", str(out)]
    result = invoke(*args, "--device", "cpu", "--quiet")
    assert result.exit_code == 0, result.output
    logdir = EventMultiplexer().AddRunsFromDirectory(str(out / RUNS_FOLDER))  # tensorboard --logdir
    logdir.Reload()
    runs = logdir.Runs()
    assert sorted(runs) == sorted(path.name for path in (out / RUNS_FOLDER).iterdir())
    assert len(runs) == 2
    assert all("epoch/loss" in tags["scalars"] for tags in runs.values())


def test_pretrain_without_tensorboard_is_one_line_with_the_install(
    invoke, recipe, tmp_path, monkeypatch
) -> None:
    block_tensorboard(monkeypatch)
    out = tmp_path / "run"
    result = invoke("pretrain", "--recipe", str(recipe), "--out", str(out), "--set", TENSORBOARD)
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "pip install 'hssl[tensorboard]'" in result.stderr and "make install" in result.stderr
    assert not out.exists()


def test_ablate_without_tensorboard_stops_before_any_run(
    invoke, recipe, tmp_path, monkeypatch
) -> None:
    block_tensorboard(monkeypatch)
    out = tmp_path / "study"
    args = ["ablate", "--recipe", str(recipe), "--grid", "model.structure=equivariant"]
    result = invoke(*args, "--set", TENSORBOARD, "--out", str(out), "--device", "cpu")
    assert result.exit_code == 2
    assert "hssl[tensorboard]" in result.stderr
    assert not (out / RUNS_FOLDER).exists()
