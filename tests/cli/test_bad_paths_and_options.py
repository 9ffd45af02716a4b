"""Unwritable output paths, malformed option values and damaged checkpoints: each command
exits 2 with one short line, before any work."""

import json
import struct
from pathlib import Path

import pytest
import safetensors.torch
import torch
import yaml

from hssl_cli.checkpoint import CHECKPOINT_FORMAT, UNCHECKED_FORMATS, atomic_save
from hssl_cli.errors import MESSAGE_LIMIT

TINY = {
    "data": {"name": "digits", "limit_train": 64, "limit_test": 32, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 4]},
    "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
    "train": {"epochs": 1, "batch_size": 32},
}
LINE_LIMIT = len("error: ") + MESSAGE_LIMIT


def one_line_exit_2(result) -> str:
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert len(lines[0]) <= LINE_LIMIT and "Traceback" not in result.output
    return lines[0]


@pytest.fixture()
def places(tmp_path: Path) -> dict[str, Path]:
    """A recipe, a file to put paths under, and a checkpoint path nobody reads."""
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(TINY))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file, not a folder\n")
    return {"recipe": recipe, "file": a_file, "checkpoint": tmp_path / "unread.safetensors"}


UNWRITABLE = ["under a file"] + (["/proc"] if Path("/proc/self").is_dir() else [])


def unwritable(places: dict[str, Path], kind: str, name: str) -> tuple[str, str]:
    """The path and what the refusal says about it."""
    if kind == "/proc":
        return f"/proc/hssl-test-{name}", "cannot write in /proc"
    return str(places["file"] / name), "is a file, not"


@pytest.mark.parametrize("kind", UNWRITABLE)
def test_unwritable_out_and_plot_paths(invoke, places, tmp_path: Path, kind: str) -> None:
    recipe, checkpoint = str(places["recipe"]), str(places["checkpoint"])
    out, problem = unwritable(places, kind, "run")
    plot, plot_problem = unwritable(places, kind, "plot.png")
    grid = ("--grid", "optim.lr=0.1,0.01")
    commands = [
        (("pretrain", "--recipe", recipe, "--out", out), "--out", problem),
        (("export", checkpoint, "--out", out), "--out", problem),
        (("ablate", "--recipe", recipe, *grid, "--out", out), "--out", problem),
        (("linear-probe", checkpoint, "--plot", plot), "--plot", plot_problem),
        (("inspect-equivariance", checkpoint, "--plot", plot), "--plot", plot_problem),
        (("inspect-equivariance", "--recipe", recipe, "--plot", plot), "--plot", plot_problem),
    ]  # fmt: skip
    for args, option, what in commands:
        line = one_line_exit_2(invoke(*args))
        assert line.startswith(f"error: {option} ") and what in line, (args, line)
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt", "tiny.yaml"]


@pytest.mark.parametrize(
    "args, problem",
    [
        (("--angles", "nan:360:15"), "must be finite numbers"),
        (("--angles", "0:inf:15"), "must be finite numbers"),
        (("--angles", "0:360:-inf"), "must be finite numbers"),
        (("--angles", "0:1e308:1e-300"), "asks for more angles than a float counts"),
        (("--angles", "0:360:0.01"), "asks for 36000 angles"),
        (("--samples", "0"), "--samples 0: give 1 to 4096 images"),
        (("--samples", "-3"), "--samples -3: give 1 to 4096 images"),
        (("--samples", "100000000000"), "--samples 100000000000: give 1 to 4096"),
        (("--device", "tpu"), "unknown device 'tpu'"),
        (("--precision", "fp8"), "--precision 'fp8'"),
        (("--data", "camera"), "--data 'camera'"),
    ],
)
def test_bad_inspect_options(invoke, places, args: tuple[str, ...], problem: str) -> None:
    """Refused before the (absent) checkpoint is read."""
    line = one_line_exit_2(invoke("inspect-equivariance", str(places["checkpoint"]), *args))
    assert problem in line and "not found" not in line, line


@pytest.mark.parametrize(
    "args, problem",
    [(("--device", "tpu"), "unknown device 'tpu'"), (("--precision", "fp8"), "--precision")],
)
def test_bad_probe_options(invoke, places, args: tuple[str, ...], problem: str) -> None:
    line = one_line_exit_2(invoke("linear-probe", str(places["checkpoint"]), *args))
    assert problem in line, line


def test_long_user_input_is_cut_in_the_message(invoke, places) -> None:
    long = "q" * 20_000
    for args in (
        ("inspect-equivariance", str(places["checkpoint"]), "--angles", long),
        ("inspect-equivariance", str(places["checkpoint"]), "--device", long),
        ("inspect-equivariance", "--recipe", str(places["recipe"]), "--group", long),
        ("linear-probe", str(places["checkpoint"]), "--plot", long + ".png"),
        ("pretrain", "--recipe", str(places["recipe"]), "--out", str(places["file"] / long)),
    ):
        line = one_line_exit_2(invoke(*args))
        assert "qqq" in line and long not in line, args[:3]


def test_damaged_checkpoints_for_probe_inspect_and_export(invoke, tmp_path: Path) -> None:
    """A weight's flipped bit, a file of the old format whose stored recipe is a megabyte
    (a tampered checkpoint once made linear-probe print gigabytes), an absurd header: one
    short line."""
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "recipe": yaml.safe_dump(TINY),
        "epoch": "1",
        "feature_shapes": json.dumps({"input": [1, 16, 16]}),
    }
    flipped = tmp_path / "flipped.safetensors"
    atomic_save({"backbone.w": torch.arange(8.0)}, metadata, flipped)
    data = bytearray(flipped.read_bytes())
    data[-3] ^= 0x10
    flipped.write_bytes(data)
    bloated = tmp_path / "bloated.safetensors"
    old = {**metadata, "format": UNCHECKED_FORMATS[CHECKPOINT_FORMAT]}
    old["recipe"] = "seed: " + "9" * 1_000_000 + "x\n"
    safetensors.torch.save_file({"backbone.w": torch.zeros(2)}, str(bloated), metadata=old)
    huge = tmp_path / "huge.safetensors"
    huge.write_bytes(struct.pack("<Q", 2**62) + b"{}")
    for path, problem in ((flipped, "is damaged"), (bloated, ""), (huge, "header claims")):
        for command in ("linear-probe", "inspect-equivariance", "export"):
            args = [command, str(path)] + (["--out", str(tmp_path / "x")] * (command == "export"))
            line = one_line_exit_2(invoke(*args))
            assert problem in line, (command, path.name, line)


def test_recipe_path_that_looks_like_markup(invoke, places, tmp_path: Path) -> None:
    """rich reads "[/x]" as a closing tag: the table title quotes the path escaped."""
    folder = tmp_path / "odd[/x]"
    folder.mkdir(parents=True)
    recipe = folder / "[bold]tiny.yaml"
    recipe.write_text(places["recipe"].read_text())
    args = ("--recipe", str(recipe), "--angles", "none", "--samples", "2", "--data", "noise")
    result = invoke("inspect-equivariance", *args)
    assert result.exit_code == 0, result.output
    assert "[bold]tiny.yaml" in result.stdout
