"""``hssl export`` on a tiny run: the folder it writes, its summary, and user errors."""

import json
from pathlib import Path

import pytest
import torch

from hssl_cli import load_backbone

TINY = {
    "data": {"name": "digits", "limit_test": 16, "limit_train": 32, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 3]},
    "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
    "train": {"epochs": 0, "batch_size": 16},
}


@pytest.fixture()
def checkpoint(invoke, write_recipe, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    made = invoke("pretrain", "--recipe", str(write_recipe(TINY)), "--out", str(out), "-q")
    assert made.exit_code == 0, made.output
    return out / "checkpoint.safetensors"


def test_export_writes_a_folder_that_loads_to_the_same_features(
    invoke, checkpoint: Path, tmp_path: Path
) -> None:
    out = tmp_path / "exported"
    result = invoke("export", str(checkpoint), "--out", str(out), "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["out"] == str(out) and summary["backbone"] == "cnn"
    assert summary["invariant_dim"] == 3 and summary["full_dim"] == 12
    assert summary["relative_error"] < 1e-5
    images = torch.rand(2, 1, 16, 16)
    with torch.no_grad():
        exported, original = load_backbone(out)(images), load_backbone(checkpoint)(images)
    torch.testing.assert_close(exported.full, original.full, rtol=1e-5, atol=1e-6)

    text = invoke("export", str(checkpoint), "--out", str(out))  # over an earlier export
    assert text.exit_code == 0, text.output
    assert "load_backbone" in text.stdout
    assert invoke("export", str(checkpoint), "--out", str(out), "--quiet").stdout == ""


def test_user_errors_exit_2_with_one_line(invoke, checkpoint: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken"
    taken.write_text("")
    notes = tmp_path / "notes.md"
    notes.write_text("# not a checkpoint\n")
    for args in (
        [str(tmp_path / "missing.safetensors"), "--out", str(tmp_path / "a")],
        [str(notes), "--out", str(tmp_path / "b")],
        [str(checkpoint), "--out", str(taken)],
    ):
        result = invoke("export", *args)
        assert result.exit_code == 2, result.output
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.output
