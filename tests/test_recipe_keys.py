"""``recipe_keys`` against the schema: every key validation accepts is listed, with help, and
the listed defaults are the models' own."""

from __future__ import annotations

import typing

import pytest
import yaml
from pydantic import BaseModel

from hssl_cli.config import METHOD_CONFIGS, Recipe
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe_keys import format_keys, recipe_keys


def nested_models(annotation: typing.Any) -> list[type[BaseModel]]:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in typing.get_args(annotation) for model in nested_models(arg)]


def accepted_keys(
    model: type[BaseModel], prefix: str = "", inside: tuple[type[BaseModel], ...] = ()
) -> set[str]:
    """Every dotted key the models accept; a model inside itself (E-SSL as its own base,
    which validation refuses) is not followed."""
    keys = set()
    for name, field in model.model_fields.items():
        path = f"{prefix}.{name}" if prefix else name
        keys.add(path)
        for sub in nested_models(field.annotation):
            if sub not in (*inside, model):
                keys |= accepted_keys(sub, path, (*inside, model))
    return keys


def test_every_accepted_key_is_listed_and_nothing_else() -> None:
    listed = {key.path for key in recipe_keys()}
    assert listed == accepted_keys(Recipe)
    assert {"train.epochs", "model.group", "method.name", "data.name", "optim.lr"} <= listed
    assert "method.base_method.temperature" in listed  # E-SSL's base method's options


@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_one_method_lists_exactly_its_keys(method: str) -> None:
    listed = {key.path for key in recipe_keys(method)}
    own = {f"method.{key}" for key in accepted_keys(METHOD_CONFIGS[method], inside=(Recipe,))}
    others = {key for key in accepted_keys(Recipe) if not key.startswith("method.")}
    assert listed == own | others


def test_every_key_has_one_line_help() -> None:
    for key in recipe_keys():
        assert key.help and "\n" not in key.help, key.path


def test_keys_of_several_methods_name_them() -> None:
    temperature = [key for key in recipe_keys() if key.path == "method.temperature"]
    assert len(temperature) == 1
    takers = {
        name for name, config in METHOD_CONFIGS.items() if "temperature" in config.model_fields
    }
    assert temperature[0].owners == (", ".join(sorted(takers)),)
    # vicreg's projector is wider by default: its own line
    out_dims = {
        key.default: key.owners for key in recipe_keys() if key.path == "method.projector_out_dim"
    }
    assert out_dims["512"] == ("vicreg",) and "vicreg" not in out_dims["128"][0]
    assert all(not key.owners for key in recipe_keys("simclr"))  # one method: nothing to say


def _value_at(tree: typing.Any, path: str) -> typing.Any:
    for part in path.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return KeyError
        tree = tree[part]
    return tree


def same_value(shown: typing.Any, expected: typing.Any) -> bool:
    """Equal, floats to the 6 digits the listing shows."""
    if isinstance(expected, list):
        return (
            isinstance(shown, list)
            and len(shown) == len(expected)
            and all(map(same_value, shown, expected))
        )
    if isinstance(expected, float) and not isinstance(shown, bool):
        return shown == pytest.approx(expected, rel=1e-5)
    return shown == expected and type(shown) is type(expected)


@pytest.mark.parametrize("method", sorted(METHOD_CONFIGS))
def test_listed_defaults_are_the_models_defaults(method: str) -> None:
    """Each default, read as YAML, is the value a recipe with only ``method.name`` gets."""
    resolved = Recipe.model_validate({"method": {"name": method}}).to_dict()
    checked = 0
    for key in recipe_keys(method):
        expected = _value_at(resolved, key.path)
        if expected is KeyError or isinstance(expected, dict):
            continue  # a section, or a key inside a section that is null by default
        shown = yaml.safe_load(key.default)
        assert same_value(shown, expected), (key.path, shown, expected)
        checked += 1
    assert checked > 30


def test_type_column_shows_choices_and_bounds() -> None:
    keys = {key.path: key for key in recipe_keys("hssl")}
    assert keys["train.precision"].type == "fp32 | bf16 | fp16"
    assert keys["train.epochs"].type == "int in [0, 1000000000]"
    assert keys["data.image_size"].type == "int in (0, 4096] | null"
    assert keys["optim.weight_decay"].type == "float >= 0"
    assert keys["method.augment.hflip"].type == "float in [0, 1]"
    assert keys["train.log"].type == "list[jsonl | tensorboard]"


def test_unknown_method_is_a_user_error_with_a_suggestion() -> None:
    with pytest.raises(HsslUserError, match="did you mean 'simclr'"):
        recipe_keys("simclrr")


def test_format_puts_one_key_per_line() -> None:
    keys = recipe_keys()
    lines = [line for line in format_keys(keys).splitlines() if line]
    assert len(lines) == len(keys)
    assert all(line.split()[0] == key.path for line, key in zip(lines, keys, strict=True))
