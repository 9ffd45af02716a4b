"""A run folder survives kills, signals, a full disk and a second writer, and resumes exactly.

Kills are aimed: a child process trains with ``os.replace`` patched to SIGKILL itself just
before or just after the rename that lands one of the run files, and the folder it leaves
must resume to the weights of an uninterrupted run. (The children are fresh interpreters,
not forks: a fork of a process whose OpenMP threads have run can hang in the child.)
"""

import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

import hssl_cli.training.loop as loop
from hssl_cli.checkpoint import TRAIN_STATE_FORMAT, read_checkpoint, read_safetensors
from hssl_cli.errors import HsslUserError, TrainingDiverged
from hssl_cli.io import atomic_write_text
from hssl_cli.recipe import load_recipe
from hssl_cli.run_files import (
    CHECKPOINT_NAME,
    LOCK_NAME,
    METRICS_NAME,
    RECIPE_NAME,
    TRAIN_STATE_NAME,
)
from hssl_cli.run_lock import hold_run_folder
from hssl_cli.training import pretrain
from hssl_cli.training.stop import TrainingStopped

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "recipes" / "digits_rot4.yaml"
# 96 images in batches of 32: 3 steps per epoch; a whole warm-up epoch, so the first epoch
# is the same whatever train.epochs says.
TINY = ["data.limit_train=96", "train.batch_size=32", "model.widths=[4,8]", "optim.warmup_epochs=1"]
CPU = torch.device("cpu")
RUN_FILES = {CHECKPOINT_NAME: "checkpoint", TRAIN_STATE_NAME: "state", METRICS_NAME: "metrics"}


def tiny_recipe(epochs: int = 2, *overrides: str):
    return load_recipe(DIGITS, [*TINY, f"train.epochs={epochs}", *overrides])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(folder / CHECKPOINT_NAME).tensors


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = weights(a), weights(b)
    assert first.keys() == second.keys()
    assert all(torch.equal(first[key], second[key]) for key in first)


def records(folder: Path) -> list[dict]:
    lines = (folder / METRICS_NAME).read_text().splitlines()
    return [
        {
            k: v
            for k, v in json.loads(line).items()
            if k not in ("epoch_seconds", "images_per_second")
        }
        for line in lines
    ]


def state_position(folder: Path) -> tuple[str, str, str]:
    metadata = read_safetensors(folder / TRAIN_STATE_NAME, TRAIN_STATE_FORMAT)[1]
    return metadata["epoch"], metadata["step"], metadata.get("step_in_epoch", "0")


@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    """An uninterrupted 2-epoch run: what every interrupted run must end up as."""
    folder = tmp_path_factory.mktemp("runs") / "straight"
    pretrain(tiny_recipe(), folder, CPU, quiet=True)
    return folder


def send_at_step(monkeypatch, signum: int, at_step: int) -> None:
    """Make the process receive ``signum`` during global step ``at_step`` (1-based)."""
    real_step, calls = loop.train_step, []

    def step(*args, **kwargs):
        calls.append(1)
        if len(calls) == at_step:
            os.kill(os.getpid(), signum)
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop, "train_step", step)


# ---------------------------------------------------------------- kill -9 at each write


# The child: argv = folder, file name, before|after, occurrence, recipe, overrides...
KILL_AT_WRITE = """
import os, signal, sys
from pathlib import Path
folder, file_name, when, occurrence, recipe, *overrides = sys.argv[1:]
real_replace, seen = os.replace, []
def replace(source, target, *args, **kwargs):
    if Path(target).name == file_name:
        seen.append(1)
        if len(seen) == int(occurrence):
            if when == "after":
                real_replace(source, target, *args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)
    return real_replace(source, target, *args, **kwargs)
os.replace = replace
import torch
from hssl_cli.recipe import load_recipe
from hssl_cli.training import pretrain
pretrain(load_recipe(recipe, overrides), Path(folder), torch.device("cpu"), quiet=True)
"""

# The child: argv = folder, the global step to SIGKILL itself at, recipe, overrides...
KILL_AT_STEP = """
import os, signal, sys
from pathlib import Path
import torch
import hssl_cli.training.loop as loop
from hssl_cli.recipe import load_recipe
from hssl_cli.training import pretrain
folder, at_step, recipe, *overrides = sys.argv[1:]
real_step, calls = loop.train_step, []
def step(*args, **kwargs):
    calls.append(1)
    if len(calls) == int(at_step):
        os.kill(os.getpid(), signal.SIGKILL)
    return real_step(*args, **kwargs)
loop.train_step = step
pretrain(load_recipe(recipe, overrides), Path(folder), torch.device("cpu"), quiet=True)
"""


def run_child(script: str, *arguments: str) -> int:
    """Run ``script`` in a fresh interpreter; its return code (-9: it SIGKILLed itself).
    It uses this process's thread count, so that its sums are ordered as in this one."""
    threads = str(torch.get_num_threads())
    env = os.environ | {"OMP_NUM_THREADS": threads, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", script, *arguments]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode in (0, -signal.SIGKILL), done.stderr
    return done.returncode


def _killed_child(folder: Path, file_name: str, when: str, occurrence: int) -> int:
    """Train into ``folder`` in a child that SIGKILLs itself at the ``occurrence``-th rename
    onto ``file_name`` (``when``: before or after it); return its return code."""
    overrides = [*TINY, "train.epochs=2"]
    return run_child(
        KILL_AT_WRITE, str(folder), file_name, when, str(occurrence), str(DIGITS), *overrides
    )


# Each file's second write, before and after its rename (a previous file exists), and the
# first writes of the pair, before any run file exists. Each case costs a fresh interpreter.
KILLS = [(name, when, 2) for name in RUN_FILES for when in ("before", "after")] + [
    (CHECKPOINT_NAME, "before", 1),
    (TRAIN_STATE_NAME, "before", 1),
]


@pytest.mark.parametrize(
    ("file_name", "when", "occurrence"),
    KILLS,
    ids=[f"{RUN_FILES[name]}-{when}-{occurrence}" for name, when, occurrence in KILLS],
)
def test_a_kill_at_any_write_leaves_a_run_that_resumes_exactly(
    straight: Path, tmp_path: Path, file_name: str, when: str, occurrence: int
) -> None:
    folder = tmp_path / "run"
    assert _killed_child(folder, file_name, when, occurrence) == -signal.SIGKILL
    leftovers = [path.name for path in folder.iterdir() if path.name.endswith(".tmp")]
    pretrain(tiny_recipe(), folder, CPU, resume=True, quiet=True)
    assert_same_weights(straight, folder)
    assert records(folder) == records(straight)  # every epoch once, none lost
    assert state_position(folder) == state_position(straight)
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]
    if when == "before":
        assert leftovers  # the killed write's temporary file, removed by the resume


def test_checkpoint_one_epoch_ahead_of_the_state_resumes(straight: Path, tmp_path: Path) -> None:
    one = tmp_path / "one"
    pretrain(tiny_recipe(1), one, CPU, quiet=True)
    folder = tmp_path / "ahead"
    shutil.copytree(straight, folder)
    shutil.copy(one / TRAIN_STATE_NAME, folder / TRAIN_STATE_NAME)  # the epoch-1 state
    pretrain(tiny_recipe(), folder, CPU, resume=True, quiet=True)
    assert_same_weights(straight, folder)


# ---------------------------------------------------------------- signals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT, signal.SIGUSR1])
def test_a_signal_stops_after_the_step_and_the_run_resumes_exactly(
    straight: Path, tmp_path: Path, monkeypatch, signum: int
) -> None:
    folder = tmp_path / "run"
    send_at_step(monkeypatch, signum, at_step=5)  # epoch 2, step 2
    with pytest.raises(TrainingStopped) as info:
        pretrain(tiny_recipe(), folder, CPU, quiet=True)
    assert info.value.signum == signum and info.value.exit_code == 128 + signum
    assert "1 finished epochs" in info.value.saved
    assert state_position(folder) == ("1", "3", "0")  # no checkpoint_every_steps: epoch 1
    monkeypatch.undo()
    pretrain(tiny_recipe(), folder, CPU, resume=True, quiet=True)
    assert_same_weights(straight, folder)
    assert records(folder) == records(straight)


def test_mid_epoch_resume_is_bit_identical(straight: Path, tmp_path: Path, monkeypatch) -> None:
    folder = tmp_path / "run"
    saving = tiny_recipe(2, "train.checkpoint_every_steps=2")
    send_at_step(monkeypatch, signal.SIGTERM, at_step=4)  # epoch 2, step 1
    with pytest.raises(TrainingStopped) as info:
        pretrain(saving, folder, CPU, quiet=True)
    assert "epoch 2, step 1" in info.value.saved
    assert state_position(folder) == ("1", "4", "1")
    assert read_checkpoint(folder / CHECKPOINT_NAME).epoch == 1  # the product: whole epochs
    monkeypatch.undo()
    # checkpoint_every_steps may change on resume; the other run saved at no mark
    pretrain(tiny_recipe(), folder, CPU, resume=True, quiet=True)
    assert_same_weights(straight, folder)
    assert records(folder) == records(straight)  # epoch 2's means include the steps before


def test_a_kill_after_a_mid_epoch_save_resumes_exactly(straight: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    # SIGKILL at epoch 2's last step: after the save at its step 2
    overrides = [*TINY, "train.epochs=2", "train.checkpoint_every_steps=2"]
    assert run_child(KILL_AT_STEP, str(folder), "6", str(DIGITS), *overrides) == -signal.SIGKILL
    assert state_position(folder) == ("1", "5", "2")
    pretrain(tiny_recipe(), folder, CPU, resume=True, quiet=True)
    assert_same_weights(straight, folder)


def test_sigterm_in_the_cli_prints_the_resume_command_and_exits_143(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    script = (
        "import os, signal, sys\n"
        "import hssl_cli.training.loop as loop\n"
        "real, calls = loop.train_step, []\n"
        "def step(*a, **k):\n"
        "    calls.append(1)\n"
        "    if len(calls) == 4: os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "loop.train_step = step\n"
        "from hssl_cli.cli.main import app\n"
        "sys.argv = ['hssl', *sys.argv[1:]]\n"
        "app()\n"
    )
    overrides = [f"--set={text}" for text in [*TINY, "train.epochs=2"]]
    arguments = ["pretrain", "--recipe", str(DIGITS), "--out", str(folder), *overrides]
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-c", script, *arguments, "--device", "cpu", "--quiet"]
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 143, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("stopped by SIGTERM: the run folder keeps 1 finished epochs")
    assert f"continue with: hssl pretrain --recipe {DIGITS} --out {folder}" in lines[0]
    assert lines[0].endswith("--set=train.epochs=2 --resume")
    assert state_position(folder) == ("1", "3", "0")


# ---------------------------------------------------------------- refusals and repairs


def test_resume_without_training_state_refuses(straight: Path, tmp_path: Path) -> None:
    folder = tmp_path / "run"
    shutil.copytree(straight, folder)
    (folder / TRAIN_STATE_NAME).unlink()
    before = (folder / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(HsslUserError, match="no train_state.safetensors"):
        pretrain(tiny_recipe(3), folder, CPU, resume=True, quiet=True)
    assert (folder / CHECKPOINT_NAME).read_bytes() == before


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (RECIPE_NAME, b"\xff\xfe not yaml"),
        (RECIPE_NAME, b"train: [unclosed"),
        (RECIPE_NAME, b"- a list"),
        (RECIPE_NAME, b"a: &bomb [1, 2]\nb: [*bomb, *bomb]\n"),
        (TRAIN_STATE_NAME, b"\x00" * 100),
        (TRAIN_STATE_NAME, b""),
    ],
)
def test_damaged_run_files_on_resume_are_user_errors(
    straight: Path, tmp_path: Path, name: str, content: bytes
) -> None:
    folder = tmp_path / "run"
    shutil.copytree(straight, folder)
    (folder / name).write_bytes(content)
    with pytest.raises(HsslUserError, match=str(folder / name)):
        pretrain(tiny_recipe(3), folder, CPU, resume=True, quiet=True)


def test_leftover_temporaries_are_removed_on_the_next_start(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    folder.mkdir()
    leftover = folder / f".{CHECKPOINT_NAME}.0123abcd.tmp"
    leftover.write_bytes(b"half a checkpoint")
    kept = folder / "notes.tmp"
    kept.write_text("not ours")
    pretrain(tiny_recipe(0), folder, CPU, quiet=True)
    assert not leftover.exists() and kept.exists()


def test_divergence_in_the_first_epoch_says_no_checkpoint_exists(tmp_path, monkeypatch) -> None:
    real_step = loop.train_step

    def nan_step(*args, **kwargs):
        values = real_step(*args, **kwargs)
        values["loss"] = values["loss"] * float("nan")
        return values

    monkeypatch.setattr(loop, "train_step", nan_step)
    folder = tmp_path / "run"
    with pytest.raises(TrainingDiverged) as info:
        pretrain(tiny_recipe(), folder, CPU, quiet=True)
    assert "no epoch had finished, so no checkpoint was written" in str(info.value)
    assert "intact" not in str(info.value)
    assert not (folder / CHECKPOINT_NAME).exists()


# ---------------------------------------------------------------- one writer per folder


def test_a_second_writer_is_refused_with_the_holders_pid(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with hold_run_folder(folder):
        assert (folder / LOCK_NAME).read_text().strip() == str(os.getpid())
        with pytest.raises(
            HsslUserError, match=rf"in use by another hssl process \(PID {os.getpid()}\)"
        ):
            pretrain(tiny_recipe(1), folder, CPU, quiet=True)
        assert not (folder / CHECKPOINT_NAME).exists()
    pretrain(tiny_recipe(0), folder, CPU, quiet=True)  # released when the holder is done


def test_the_lock_is_released_when_its_holder_is_killed(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from pathlib import Path; from hssl_cli.run_lock import "
            "hold_run_folder\nwith hold_run_folder(Path(sys.argv[1])):\n"
            "    print('held', flush=True); time.sleep(60)",
            str(folder),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=os.environ | {"PYTHONPATH": str(ROOT)},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(HsslUserError, match=f"PID {holder.pid}"):
            with hold_run_folder(folder):
                pass
    finally:
        holder.kill()
        holder.wait()
    with hold_run_folder(folder):
        pass


def test_pretrain_cli_on_a_folder_in_use_exits_2(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from hssl_cli.cli.main import app

    folder = tmp_path / "run"
    with hold_run_folder(folder):
        overrides = [f"--set={text}" for text in TINY]
        result = CliRunner().invoke(
            app, ["pretrain", "--recipe", str(DIGITS), "--out", str(folder), *overrides, "--resume"]
        )
    assert result.exit_code == 2
    assert f"PID {os.getpid()}" in result.output and "Traceback" not in result.output


# ---------------------------------------------------------------- disk full


@pytest.fixture()
def small_tmpfs(tmp_path: Path) -> Callable[[str], Path]:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=100k", "tmpfs", str(mount_point)])
    if mounted.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")

    def resize(size: str) -> Path:
        subprocess.run(["mount", "-o", f"remount,size={size}", str(mount_point)], check=True)
        return mount_point

    yield resize
    subprocess.run(["umount", str(mount_point)], check=False)


def test_disk_full_is_one_line_and_the_run_resumes_after_space_is_freed(
    straight: Path, tmp_path: Path, small_tmpfs
) -> None:
    from typer.testing import CliRunner

    from hssl_cli.cli.main import app

    folder = small_tmpfs("100k") / "run"
    overrides = [f"--set={text}" for text in [*TINY, "train.epochs=2"]]
    arguments = ["pretrain", "--recipe", str(DIGITS), "--out", str(folder), *overrides, "--quiet"]
    full = CliRunner().invoke(app, [*arguments, "--device", "cpu"])
    assert full.exit_code == 2, full.output
    assert len(full.output.strip().splitlines()) == 1 and "disk full" in full.output
    assert not [path for path in folder.iterdir() if path.name.endswith(".tmp")]
    small_tmpfs("2m")
    resumed = CliRunner().invoke(app, [*arguments, "--device", "cpu", "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert_same_weights(straight, folder)
    assert records(folder) == records(straight)


def test_atomic_writes_on_a_full_disk_leave_the_old_file(tmp_path: Path, small_tmpfs) -> None:
    target = small_tmpfs("100k") / "recipe.yaml"
    atomic_write_text(target, "old")
    with pytest.raises(OSError):
        atomic_write_text(target, "x" * 200_000)
    assert target.read_text() == "old"
    assert os.listdir(target.parent) == ["recipe.yaml"]


def test_ablate_refuses_a_run_whose_folder_is_in_use(tmp_path: Path) -> None:
    from hssl_cli.ablation.runner import RunFailed, execute_run_in_process
    from hssl_cli.ablation.study import Run

    folder = tmp_path / "run"
    run = Run(name="r", recipe=DIGITS, overrides=tuple(TINY), levels={}, seed=0)
    with hold_run_folder(folder):
        with pytest.raises(RunFailed, match=f"in use by another hssl process \\(PID {os.getpid()}"):
            execute_run_in_process(run, folder, "cpu", {})
    assert not (folder / CHECKPOINT_NAME).exists()
