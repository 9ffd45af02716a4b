"""Export to plain PyTorch: same features as the escnn model, loads without escnn, clear errors."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from hssl_cli.checkpoint import save_checkpoint
from hssl_cli.errors import HsslUserError
from hssl_cli.export import SPEC_FILE, WEIGHTS_FILE, export_checkpoint, load_backbone
from hssl_cli.export.conversion import describe
from hssl_cli.models import BACKBONES, build_backbone
from hssl_cli.recipe import validate_recipe

INPUT_SHAPE = [3, 16, 16]
TINY_MODELS = {
    "cnn-rot4": {"backbone": "cnn", "group": "rot4", "widths": [2, 3], "convs_per_stage": 2},
    "cnn-rot4flip-mean": {
        "backbone": "cnn",
        "group": "rot4flip",
        "widths": [2, 3],
        "group_pool": "mean",
    },
    "e2resnet18-rot4": {"backbone": "e2resnet18", "group": "rot4", "width_multiplier": 0.0625},
    "cnn-unstructured": {
        "backbone": "cnn",
        "group": "rot4",
        "structure": "unstructured",
        "widths": [2, 3],
    },
    "resnet18": {"backbone": "resnet18", "group": "trivial", "width_multiplier": 0.0625},
}


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def images(seed: int = 1) -> torch.Tensor:
    return torch.rand(4, *INPUT_SHAPE, generator=torch.Generator().manual_seed(seed))


def write_checkpoint(model: dict, path: Path) -> Path:
    """A checkpoint whose batch norms hold non-trivial statistics and normalisation."""
    recipe = validate_recipe({"model": model, "method": {"name": "simclr"}})
    torch.manual_seed(0)
    backbone = build_backbone(recipe.model, INPUT_SHAPE[0])
    backbone.set_normalization([0.2, 0.5, 0.4], [0.3, 0.2, 0.25])
    backbone.train()
    with torch.no_grad():
        for seed in range(3):
            backbone(images(seed) * 2)
    save_checkpoint(path, backbone, nn.Module(), recipe, 1, {"input": INPUT_SHAPE})
    return path


@pytest.fixture(scope="module")
def exports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, Path]]:
    """(checkpoint, export folder) of every tiny model."""
    root = tmp_path_factory.mktemp("exports")
    made = {}
    for name, model in TINY_MODELS.items():
        checkpoint = write_checkpoint(model, root / f"{name}.safetensors")
        export_checkpoint(checkpoint, root / name)
        made[name] = (checkpoint, root / name)
    return made


# Scale backbones read fibers with a spatial maximum, which the plain network format has no
# layer for: export refuses them with a user error (tested below).
NOT_EXPORTED = {"sesn_cnn", "sesn_resnet18"}


def test_every_registered_backbone_is_exported_by_a_test() -> None:
    exported = {model["backbone"] for model in TINY_MODELS.values()}
    assert set(BACKBONES) - NOT_EXPORTED <= exported


@pytest.mark.parametrize("structure", ["equivariant", "unstructured"])
def test_scale_backbones_are_refused_with_a_user_error(tmp_path: Path, structure: str) -> None:
    model = {"backbone": "sesn_cnn", "group": "scale2", "widths": [2], "structure": structure}
    path = tmp_path / "checkpoint.safetensors"
    write_checkpoint(model, path)
    with pytest.raises(HsslUserError, match="hssl export does not"):
        export_checkpoint(path, tmp_path / "export")


@pytest.mark.parametrize("name", TINY_MODELS)
def test_exported_features_equal_the_checkpoints(name: str, exports: dict) -> None:
    checkpoint, folder = exports[name]
    original, exported = load_backbone(checkpoint), load_backbone(folder)
    assert not original.training and not exported.training
    with torch.no_grad():
        expected, actual = original(images()), exported(images())
    assert actual.invariant.shape == expected.invariant.shape
    assert actual.full.shape == expected.full.shape
    assert relative_error(actual.invariant, expected.invariant) < 1e-5
    assert relative_error(actual.full, expected.full) < 1e-5
    torch.testing.assert_close(actual.feature_map, expected.feature_map, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["cnn-rot4", "e2resnet18-rot4"])
def test_exported_escnn_model_is_plain_torch(name: str, exports: dict) -> None:
    original, exported = load_backbone(exports[name][0]), load_backbone(exports[name][1])
    assert any(type(m).__module__.startswith("escnn") for m in original.modules())
    sources = {type(m).__module__.split(".")[0] for m in exported.modules()}
    assert sources == {"torch", "hssl_cli"}


def test_folder_holds_a_json_description_and_safetensors_only(exports: dict) -> None:
    folder = exports["e2resnet18-rot4"][1]
    assert sorted(p.name for p in folder.iterdir()) == [SPEC_FILE, WEIGHTS_FILE]
    spec = json.loads((folder / SPEC_FILE).read_text())
    assert spec["format"] == "hssl.export/1"
    assert spec["group_order"] == 4 and spec["input_shape"] == INPUT_SHAPE
    assert spec["features"]["full"] == 4 * spec["features"]["invariant"]
    assert spec["network"]["layer"] == "sequential"
    kinds = json.dumps(spec["network"])
    assert '"residual"' in kinds and '"batch_norm2d"' in kinds
    assert set(load_file(str(folder / WEIGHTS_FILE))) >= {"input_mean", "input_std"}


def test_json_or_weights_file_path_loads_its_folder(exports: dict) -> None:
    folder = exports["cnn-rot4"][1]
    with torch.no_grad():
        expected = load_backbone(folder)(images()).invariant
        for path in (folder / SPEC_FILE, folder / WEIGHTS_FILE):
            assert torch.equal(load_backbone(path)(images()).invariant, expected)


def test_loads_and_matches_with_escnn_blocked(exports: dict, tmp_path: Path) -> None:
    from safetensors.torch import save_file

    names = ["cnn-rot4", "e2resnet18-rot4"]
    expected = {}
    for name in names:
        with torch.no_grad():
            output = load_backbone(exports[name][0])(images())
        expected[f"{name}.invariant"], expected[f"{name}.full"] = output.invariant, output.full
    save_file({"images": images()}, str(tmp_path / "images.safetensors"))
    code = textwrap.dedent(
        """
        import sys
        sys.modules["escnn"] = None
        import torch
        from safetensors.torch import load_file, save_file
        import hssl_cli

        images = load_file(sys.argv[1])["images"]
        features = {}
        for name, folder in zip(sys.argv[3::2], sys.argv[4::2]):
            with torch.no_grad():
                output = hssl_cli.load_backbone(folder)(images)
            features[name + ".invariant"], features[name + ".full"] = output.invariant, output.full
        save_file({k: v.contiguous() for k, v in features.items()}, sys.argv[2])
        print(" ".join(m for m in sys.modules if m.startswith("hssl_cli")))
        """
    )
    pairs = [str(part) for name in names for part in (name, exports[name][1])]
    result = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "images.safetensors"), str(tmp_path / "f")]
        + pairs,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    assert "hssl_cli.models" not in result.stdout.split()
    got = load_file(str(tmp_path / "f"))
    assert got.keys() == expected.keys()
    for key, value in expected.items():
        assert relative_error(got[key], value) < 1e-5, key


def test_unsupported_layer_is_a_user_error() -> None:
    with pytest.raises(HsslUserError, match="cannot rebuild a LSTM layer"):
        describe(nn.Sequential(nn.LSTM(2, 2)))


def user_error(path: Path) -> str:
    with pytest.raises(HsslUserError) as raised:
        load_backbone(path)
    message = str(raised.value)
    assert "\n" not in message
    return message


def test_user_mistakes_name_the_problem(exports: dict, tmp_path: Path) -> None:
    good = exports["cnn-rot4"][1]
    assert "not found" in user_error(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    assert "not an hssl export folder" in user_error(tmp_path / "empty")
    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    assert "checkpoint" in user_error(notes)

    def broken(name: str, spec: str | None, weights: bool = True) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / SPEC_FILE).write_text(spec if spec is not None else "")
        if weights:
            (folder / WEIGHTS_FILE).write_bytes((good / WEIGHTS_FILE).read_bytes())
        return folder

    spec = json.loads((good / SPEC_FILE).read_text())
    assert "not readable JSON" in user_error(broken("corrupt", '{"format": '))
    assert "not an hssl export" in user_error(broken("other", '{"format": "x"}'))
    assert "no backbone.safetensors" in user_error(broken("lonely", json.dumps(spec), False))
    spec["network"]["layers"][0]["layer"] = "mystery"
    assert "unknown layer 'mystery'" in user_error(broken("unknown", json.dumps(spec)))
    spec["network"]["layers"][0] = {"layer": "relu", "inplace": True}
    assert "do not fit" in user_error(broken("misfit", json.dumps(spec)))
    garbled = broken("garbled", (good / SPEC_FILE).read_text(), False)
    (garbled / WEIGHTS_FILE).write_bytes(b"not safetensors")
    assert "not a readable safetensors" in user_error(garbled)
    flipped = broken("flipped", (good / SPEC_FILE).read_text())
    weights = bytearray((flipped / WEIGHTS_FILE).read_bytes())
    weights[-2] ^= 0x04  # a bit of the last weight
    (flipped / WEIGHTS_FILE).write_bytes(weights)
    assert "is damaged: its content does not match the sha256" in user_error(flipped)


def test_export_to_a_file_is_a_user_error(exports: dict, tmp_path: Path) -> None:
    target = tmp_path / "taken"
    target.write_text("")
    with pytest.raises(HsslUserError, match="is a file"):
        export_checkpoint(exports["cnn-rot4"][0], target)
