"""The Python API: the README's session runs as printed, and the functions' own contracts."""

import re
from pathlib import Path

import pytest

from hssl_cli import api
from hssl_cli.errors import HsslUserError

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = ["model.widths=[2,3]", "data.limit_test=8", "data.image_size=16"]


def readme_session() -> str:
    """The ``python`` block of the README's "Python API" section."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Python API section holds one python block"
    return blocks[0]


def test_the_readme_session_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code = readme_session()
    assert "runs/notebook" in code
    monkeypatch.chdir(ROOT)  # the session's recipe path is relative to the repository
    namespace: dict = {}
    exec(compile(code.replace("runs/notebook", str(tmp_path)), "README.md", "exec"), namespace)
    run = namespace["run"]
    assert run.checkpoint == tmp_path / "checkpoint.safetensors" and run.checkpoint.is_file()
    assert (run.epochs_done, run.metrics["epoch"]) == (1, 1)
    assert run.metrics["loss"] == pytest.approx(run.last_loss)
    probe = namespace["probe"]
    assert (probe["train_size"], probe["test_size"]) == (256, 128)
    assert set(probe["random_init"]) == set(probe["gain"]) == {"invariant", "full"}
    assert Path(probe["plot"]).is_file()
    assert namespace["report"]["verdict"].startswith("exactly equivariant")


def test_inspect_equivariance_takes_a_recipe_object_with_overrides() -> None:
    recipe = api.load_recipe(ROOT / "recipes/digits_rot4.yaml", TINY_MODEL)
    report = api.inspect_equivariance(
        recipe, overrides=["model.group=rot2"], samples=2, angles="none", device="cpu"
    )
    assert report["source"] == "recipe (random init)"
    assert (report["model_group"], report["samples"]) == ("rot2", 2)
    assert report["verdict"].startswith("exactly equivariant")


def test_api_mistakes_are_user_errors_raised_before_any_work(tmp_path: Path) -> None:
    recipe = ROOT / "recipes/digits_rot4.yaml"
    with pytest.raises(HsslUserError, match="train.epocs"):
        api.load_recipe(recipe, ["train.epocs=1"])
    with pytest.raises(HsslUserError, match="give a .png path"):
        api.inspect_equivariance(recipe, plot=tmp_path / "plot.jpg")
    with pytest.raises(HsslUserError, match="not found"):
        api.linear_probe(tmp_path / "missing.safetensors")
    with pytest.raises(HsslUserError, match="--data 'camera'"):
        api.inspect_equivariance(recipe, data="camera")
