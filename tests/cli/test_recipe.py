"""``hssl recipe show`` and ``hssl recipe keys``."""

from pathlib import Path

import pytest
import yaml

from hssl_cli.recipe import load_recipe, validate_recipe

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


@pytest.mark.parametrize("recipe", RECIPES, ids=[path.stem for path in RECIPES])
def test_show_prints_yaml_that_validates_to_the_same_recipe(invoke, recipe: Path) -> None:
    result = invoke("recipe", "show", str(recipe))
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert set(shown) == {"data", "model", "method", "optim", "train", "probe", "seed"}
    assert validate_recipe(shown) == load_recipe(recipe)


def test_show_applies_overrides_inheritance_and_defaults(invoke, write_recipe) -> None:
    parent = write_recipe({"model": {"group": "rot8"}, "train": {"epochs": 3}})
    child = parent.with_name("child.yaml")
    child.write_text(yaml.safe_dump({"base": parent.name, "method": {"name": "simclr"}}))
    result = invoke("recipe", "show", str(child), "--set", "train.epochs=7")
    assert result.exit_code == 0, result.output
    shown = yaml.safe_load(result.stdout)
    assert shown["model"]["group"] == "rot8" and shown["train"]["epochs"] == 7
    assert shown["method"]["name"] == "simclr" and shown["method"]["temperature"] == 0.5
    assert shown["probe"]["knn_k"] == 200 and shown["train"]["log"] == ["jsonl"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["show", "missing.yaml"], "recipe file not found"),
        (["show", "RECIPE", "--set", "train.epocs=3"], "did you mean 'train.epochs'"),
        (["keys", "--method", "simclrr"], "did you mean 'simclr'"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(invoke, write_recipe, args, message) -> None:
    recipe = write_recipe({})
    result = invoke("recipe", *[str(recipe) if arg == "RECIPE" else arg for arg in args])
    assert result.exit_code == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1 and message in result.stderr


def test_keys_lists_every_section_and_one_method(invoke) -> None:
    result = invoke("recipe", "keys")
    assert result.exit_code == 0, result.output
    keys = {line.split()[0] for line in result.stdout.splitlines() if line}
    assert {"train.epochs", "model.group", "method.name", "data.name", "optim.lr", "seed"} <= keys
    assert {"method.temperature", "method.expander_layers"} <= keys

    vicreg = invoke("recipe", "keys", "--method", "vicreg")
    assert vicreg.exit_code == 0, vicreg.output
    keys = {line.split()[0] for line in vicreg.stdout.splitlines() if line}
    assert "method.expander_layers" in keys and "method.temperature" not in keys
    assert "train.epochs" in keys


def test_recipe_without_a_subcommand_shows_help(invoke) -> None:
    result = invoke("recipe")
    assert "show" in result.output and "keys" in result.output


def test_shell_completion_completes_commands_and_methods() -> None:
    from typer.testing import CliRunner

    from hssl_cli.cli.main import app

    def complete(words: str) -> list[str]:
        env = {"_HSSL_COMPLETE": "complete_bash", "COMP_WORDS": words}
        env["COMP_CWORD"] = str(len(words.split()) - 1)
        result = CliRunner().invoke(app, [], prog_name="hssl", env=env)
        assert result.exit_code == 0, result.output
        return result.output.split()

    assert complete("hssl rec") == ["recipe"]
    assert complete("hssl recipe keys --method v") == ["vicreg"]
