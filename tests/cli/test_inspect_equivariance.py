"""``hssl inspect-equivariance`` on tiny models."""

import json
from pathlib import Path

import pytest

TINY = {
    "data": {"name": "digits", "limit_test": 16, "limit_train": 64, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 3]},
    "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
    "train": {"epochs": 0, "batch_size": 32},
}


@pytest.fixture()
def recipe(write_recipe) -> Path:
    return write_recipe(TINY)


def walk(node, path=""):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from walk(value, f"{path}[{index}]")
    elif isinstance(node, float | int) and not isinstance(node, bool):
        yield path, float(node)


def test_json_from_recipe_holds_layers_elements_and_sweep(invoke, recipe: Path) -> None:
    result = invoke(
        "inspect-equivariance", "--recipe", str(recipe), "--json", "--angles", "0:180:45"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"].startswith("exactly")
    assert report["elements"] == ["rot0", "rot90", "rot180", "rot270"]
    assert set(report["layers"][0]["rel_err"]) == set(report["elements"])
    errors = [v for p, v in walk(report) if "err" in p and "sweep" not in p]
    assert errors and max(errors) < 1e-5
    assert report["sweep"]["angles"] == [0, 45, 90, 135]
    assert len(report["sweep"]["trivial_group_invariant_err"]) == 4


def test_unstructured_twin_fails_and_plot_is_written(invoke, recipe: Path, tmp_path: Path) -> None:
    plot = tmp_path / "eq.png"
    result = invoke(
        "inspect-equivariance",
        "--recipe",
        str(recipe),
        "--set",
        "model.structure=unstructured",
        "--data",
        "noise",
        "--samples",
        "8",
        "--plot",
        str(plot),
        "--angles",
        "0:360:90",
    )
    assert result.exit_code == 0, result.output
    assert "not equivariant" in result.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_checkpoint_input_and_user_errors(invoke, recipe: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    trained = invoke("pretrain", "--recipe", str(recipe), "--out", str(out), "-q")
    assert trained.exit_code == 0, trained.output
    checkpoint = str(out / "checkpoint.safetensors")
    ok = invoke("inspect-equivariance", checkpoint, "--angles", "none", "--samples", "4")
    assert ok.exit_code == 0, ok.output
    assert "exactly equivariant" in ok.stdout

    trivial = tmp_path / "trivial"
    made = invoke(
        "pretrain",
        "--recipe",
        str(recipe),
        "--out",
        str(trivial),
        "-q",
        "--set",
        "model.group=trivial",
        "--set",
        "method.augment={}",
    )
    assert made.exit_code == 0, made.output
    cases = [
        ((checkpoint, "--group", "rot5000flipx"), "unknown group 'rot5000flipx'"),
        ((checkpoint, "--group", "rot4flip"), "group rot4 has no reflections"),
        (
            (str(trivial / "checkpoint.safetensors"), "--group", "rot4"),
            "the model has no group axis (group trivial)",
        ),
        ((checkpoint, "--angles", "0:10"), "--angles '0:10' is not START:STOP:STEP"),
        ((checkpoint, "--data", "camera"), "--data 'camera': use recipe or noise"),
        (("--recipe", str(recipe), checkpoint), "give a CHECKPOINT or --recipe PATH"),
        ((checkpoint, "--plot", str(tmp_path / "plot.pdf")), "plot.pdf: give a .png path"),
    ]
    for args, problem in cases:
        result = invoke("inspect-equivariance", *args)
        assert result.exit_code == 2, (args, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, result.stderr)
        assert problem in lines[0], (args, lines[0])
        # A clean exit, not an exception that escaped the command:
        assert isinstance(result.exception, SystemExit) and "Traceback" not in result.output


SCALE = {
    "data": {"name": "digits", "limit_test": 8, "limit_train": 64, "image_size": 32},
    "model": {
        "backbone": "sesn_cnn",
        "group": "scale2",
        "widths": [3, 4],
        "kernel_size": 9,
        "basis_size": 2,
    },
    "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
    "train": {"epochs": 0, "batch_size": 32},
}


def test_scale_model_is_approximately_equivariant_per_layer_and_factor(
    invoke, write_recipe, tmp_path: Path
) -> None:
    recipe = write_recipe(SCALE)
    result = invoke(
        "inspect-equivariance", "--recipe", str(recipe), "--json", "--factors", "0.6:1:0.2"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["verdict"].startswith("approximately equivariant")
    assert report["elements"] == ["x1", "x0.707"]
    assert [layer["name"] for layer in report["layers"]] == ["conv1", "pool1", "conv2"]
    assert all(layer["rel_err"]["x1"] == 0 for layer in report["layers"])
    assert all(0 < layer["rel_err"]["x0.707"] < report["tolerance"] for layer in report["layers"])
    assert report["structured"]["x0.707"]["best_shift"] == "x0.707"  # shifted by one scale
    assert report["sweep"]["factors"] == [0.6, 0.8, 1.0]
    assert len(report["sweep"]["unstructured_fiber_shift_err"]) == 3

    twin = invoke(
        "inspect-equivariance",
        "--recipe",
        str(recipe),
        "--set",
        "model.structure=unstructured",
        "--json",
        "--factors",
        "none",
    )
    assert twin.exit_code == 0, twin.output
    twin_report = json.loads(twin.stdout)
    assert twin_report["verdict"] == "not equivariant" and twin_report["sweep"] == {}
    model_err = max(layer["rel_err"]["x0.707"] for layer in report["layers"])
    twin_err = min(layer["rel_err"]["x0.707"] for layer in twin_report["layers"])
    assert model_err < 0.5 * twin_err

    plot = tmp_path / "scale.png"
    table = invoke("inspect-equivariance", "--recipe", str(recipe), "--plot", str(plot))
    assert table.exit_code == 0, table.output
    assert "scale sweep: worst fiber-shift error" in table.stdout
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--group", "rot4"], "measured on its own group"),
        (["--factors", "1:0.5:0.1"], "need STOP > START"),
        (["--factors", "0:1:0.5"], "must lie in (0, 4]"),
    ],
)
def test_scale_user_errors(invoke, write_recipe, args: list[str], message: str) -> None:
    result = invoke("inspect-equivariance", "--recipe", str(write_recipe(SCALE)), *args)
    assert result.exit_code == 2
    assert message in result.output
