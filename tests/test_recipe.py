"""Recipes: loading, ``base:`` inheritance, ``--set`` overrides and validation."""

from pathlib import Path

import pytest
import yaml

from hssl_cli.config import METHOD_CONFIGS, AugmentConfig, HsslConfig, Recipe, SimclrConfig
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import (
    apply_overrides,
    load_recipe,
    parse_override,
    recipe_from_yaml,
    validate_recipe,
)

RECIPES = Path(__file__).resolve().parents[1] / "recipes"
RECIPE_FILES = sorted(RECIPES.glob("*.yaml"))
DIGITS = RECIPES / "digits_rot4.yaml"


def load_digits(*overrides):
    return load_recipe(DIGITS, list(overrides))


def user_error(*overrides) -> str:
    with pytest.raises(HsslUserError) as info:
        load_digits(*overrides)
    return str(info.value)


def write(path: Path, data) -> Path:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


# ---------------------------------------------------------------- unknown keys


def test_unknown_train_key_names_it_and_suggests_the_right_one():
    message = user_error("train.epocs=3")
    assert "train.epocs" in message
    assert "did you mean 'train.epochs'?" in message
    assert message.startswith(str(DIGITS))


def test_unknown_method_key_suggests_method_option():
    message = user_error("method.temprature=0.1")
    assert "'method.temprature'" in message
    assert "did you mean 'method.temperature'?" in message


def test_unknown_augment_key_suggests_augment_option():
    message = user_error("method.augment.hfilp=0.1")
    assert "method.augment.hfilp" in message


def test_misspelt_top_level_section_suggests_section():
    message = user_error("trian.epochs=3")
    assert "unknown recipe key 'trian'" in message
    assert "did you mean 'train'?" in message


def test_unrelated_top_level_section_lists_known_sections():
    message = user_error("zzz=1")
    assert "unknown recipe key 'zzz'" in message
    assert "known keys here: data, model, method, optim, train, probe, seed" in message


# ---------------------------------------------------------------- wrong values


def test_wrong_type_names_the_key_and_the_value():
    message = user_error("train.epochs=many")
    assert "'train.epochs'" in message
    assert "'many'" in message
    assert "valid integer" in message


def test_fractional_epochs_rejected():
    assert "'train.epochs'" in user_error("train.epochs=3.5")


def test_boolean_is_not_an_epoch_count():
    assert "'train.epochs'" in user_error("train.epochs=true")


def test_out_of_range_values_are_rejected():
    assert "'method.augment.hflip'" in user_error("method.augment.hflip=2")
    assert "crop_scale must be [min, max]" in user_error("method.augment.crop_scale=[0.5,2]")
    assert "kernel_size must be odd" in user_error("model.kernel_size=4")
    assert "'train.batch_size'" in user_error("train.batch_size=1")
    assert "'optim.name'" in user_error("optim.name=lion")


def test_unknown_data_set_lists_known_ones():
    message = user_error("data.name=imagenet")
    assert "unknown data set 'imagenet'" in message
    assert "digits" in message


def test_registry_names_suggest_a_close_match():
    assert "did you mean 'fashion-mnist'?" in user_error("data.name=fashion_mnist")
    assert "did you mean 'resnet18'?" in user_error("model.backbone=resnet-18")
    assert "did you mean 'simclr'?" in user_error("method.name=simclear")


# ---------------------------------------------------------------- files


def test_missing_file_names_the_path(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(HsslUserError, match="recipe file not found") as info:
        load_recipe(missing)
    assert str(missing) in str(info.value)


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.yaml", "model:\n  group: rot4\n  widths: [8, 16\n")
    with pytest.raises(HsslUserError, match="is not valid YAML") as info:
        load_recipe(path)
    assert str(path.resolve()) in str(info.value)
    assert " line " in str(info.value)


def test_yaml_list_instead_of_mapping(tmp_path):
    path = write(tmp_path / "list.yaml", "- data\n- model\n")
    with pytest.raises(HsslUserError, match="must be a mapping of sections"):
        load_recipe(path)


def test_section_that_is_not_a_mapping(tmp_path):
    path = write(tmp_path / "flat.yaml", {"method": {"name": "hssl"}, "train": 5})
    with pytest.raises(HsslUserError, match="'train'"):
        load_recipe(path)


def test_recipe_without_method_section_defaults_to_hssl(tmp_path):
    path = write(tmp_path / "short.yaml", {"model": {"group": "rot4"}})
    recipe = load_recipe(path)
    assert isinstance(recipe.method, HsslConfig)


def test_empty_recipe_is_all_defaults():
    recipe = validate_recipe({})
    assert recipe.method.name == "hssl"
    assert recipe.model.group == "rot4"


# ---------------------------------------------------------------- groups


@pytest.mark.parametrize("group", ["rot5000flipx", "hex", "rot0", "rot65", "rot4flop", "Rot4"])
def test_unknown_group_rejected(group):
    message = user_error(f"model.group={group}")
    assert "'model.group'" in message
    assert f"unknown group {group!r}" in message
    assert "rot4flip" in message  # the help lists the naming scheme


@pytest.mark.parametrize("group", ["rot4", "rot8", "rot4flip", "flip", "trivial", "rot64"])
def test_valid_groups_accepted(group):
    assert load_digits(f"model.group={group}").model.group == group


# ---------------------------------------------------------------- --set parsing


@pytest.mark.parametrize(
    ("text", "keys", "value"),
    [
        ("train.epochs=5", ["train", "epochs"], 5),
        ("optim.lr=0.25", ["optim", "lr"], 0.25),
        ("data.download=true", ["data", "download"], True),
        ("data.download=false", ["data", "download"], False),
        ("method.augment=null", ["method", "augment"], None),
        ("method.augment=~", ["method", "augment"], None),
        ("model.widths=[8,16]", ["model", "widths"], [8, 16]),
        ("model.widths=[8, 16, 32]", ["model", "widths"], [8, 16, 32]),
        ("data.root=some/dir", ["data", "root"], "some/dir"),
        ("data.root='5'", ["data", "root"], "5"),
        ("data.path=a=b", ["data", "path"], "a=b"),
        ("seed=", ["seed"], ""),
        ("  seed=3  ", ["seed"], 3),
        ("data.path=x: [", ["data", "path"], "x: ["),  # not YAML: kept as text
    ],
)
def test_parse_override_types_values_like_yaml(text, keys, value):
    parsed_keys, parsed = parse_override(text)
    assert parsed_keys == keys
    assert parsed == value
    assert type(parsed) is type(value)


@pytest.mark.parametrize("text", ["epochs", "=5", "train..epochs=1", "train.=1", "1a=2"])
def test_parse_override_rejects_malformed(text):
    with pytest.raises(HsslUserError, match="is not KEY=VALUE"):
        parse_override(text)


def test_overrides_are_typed_in_the_recipe():
    recipe = load_digits(
        "train.epochs=7",
        "optim.lr=0.25",
        "data.download=true",
        "model.widths=[8,16]",
        "data.root=some/dir",
        "train.grad_clip=null",
    )
    assert recipe.train.epochs == 7
    assert recipe.optim.lr == 0.25
    assert recipe.data.download is True
    assert recipe.model.widths == [8, 16]
    assert recipe.data.root == "some/dir"
    assert recipe.train.grad_clip is None


def test_exponent_without_dot_still_becomes_a_float():
    # PyYAML reads 1e-3 as a string; the float field must still coerce it.
    assert load_digits("optim.lr=1e-3").optim.lr == pytest.approx(1e-3)


def test_null_augment_disables_hssl_base_augmentations():
    assert load_digits().method.augment is not None
    recipe = load_digits("method.augment=null")
    assert isinstance(recipe.method, HsslConfig)
    assert recipe.method.augment is None


def test_override_into_a_nulled_section_rebuilds_it():
    recipe = load_digits("method.augment=null", "method.augment.hflip=0.25")
    assert recipe.method.augment == AugmentConfig(hflip=0.25)


def test_later_override_wins():
    assert load_digits("train.epochs=2", "train.epochs=9").train.epochs == 9


def test_apply_overrides_creates_missing_sections():
    assert apply_overrides({}, ["train.epochs=3", "seed=4"]) == {"train": {"epochs": 3}, "seed": 4}


def test_apply_overrides_leaves_its_input_alone():
    raw = {"train": {"epochs": 1}}
    assert apply_overrides(raw, ["train.epochs=5"]) == {"train": {"epochs": 5}}
    assert raw == {"train": {"epochs": 1}}


# ---------------------------------------------------------------- base: inheritance


def test_child_overrides_one_nested_key_and_keeps_the_rest(tmp_path):
    write(
        tmp_path / "parent.yaml",
        {
            "model": {"group": "rot4flip", "widths": [8, 16, 32], "kernel_size": 5},
            "method": {"name": "hssl", "temperature": 0.3, "augment": {"hflip": 0.0}},
            "train": {"epochs": 11, "batch_size": 64},
            "seed": 5,
        },
    )
    (tmp_path / "sub").mkdir()
    child = write(
        tmp_path / "sub" / "child.yaml",
        {"base": "../parent.yaml", "model": {"widths": [4]}, "train": {"epochs": 2}},
    )
    recipe = load_recipe(child)
    assert recipe.model.widths == [4]
    assert recipe.model.group == "rot4flip"
    assert recipe.model.kernel_size == 5
    assert recipe.method.temperature == 0.3
    assert recipe.method.augment.hflip == 0.0
    assert recipe.train.epochs == 2
    assert recipe.train.batch_size == 64
    assert recipe.seed == 5


def test_grandchild_and_overrides_stack(tmp_path):
    write(tmp_path / "a.yaml", {"method": {"name": "hssl"}, "train": {"epochs": 1}, "seed": 1})
    write(tmp_path / "b.yaml", {"base": "a.yaml", "train": {"batch_size": 32}})
    c = write(tmp_path / "c.yaml", {"base": "b.yaml", "seed": 3})
    recipe = load_recipe(c, ["train.epochs=4"])
    assert (recipe.train.epochs, recipe.train.batch_size, recipe.seed) == (4, 32, 3)


def test_child_null_replaces_base_section(tmp_path):
    child = write(tmp_path / "theory.yaml", {"base": str(DIGITS), "method": {"augment": None}})
    assert load_recipe(child).method.augment is None


def test_base_cycle_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml", "seed": 1})
    write(tmp_path / "b.yaml", {"base": "a.yaml", "seed": 2})
    with pytest.raises(HsslUserError, match="break the cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_recipe_extending_itself_is_an_error(tmp_path):
    path = write(tmp_path / "self.yaml", {"base": "self.yaml"})
    with pytest.raises(HsslUserError, match="extends itself"):
        load_recipe(path)


def test_missing_base_names_the_base_path(tmp_path):
    path = write(tmp_path / "child.yaml", {"base": "gone.yaml"})
    with pytest.raises(HsslUserError, match="recipe file not found") as info:
        load_recipe(path)
    assert str(tmp_path / "gone.yaml") in str(info.value)


def test_base_must_be_a_path(tmp_path):
    path = write(tmp_path / "child.yaml", {"base": ["a.yaml"]})
    with pytest.raises(HsslUserError, match="'base' must be a path"):
        load_recipe(path)


# ---------------------------------------------------------------- method-specific validation


def test_simclr_accepts_readout():
    recipe = load_digits("method.name=simclr", "method.readout=invariant")
    assert isinstance(recipe.method, SimclrConfig)
    assert recipe.method.readout == "invariant"


def test_hssl_rejects_readout():
    message = user_error("method.readout=invariant")
    assert "'method.readout' is not an option of method hssl (it belongs to " in message
    assert "simclr" in message


def test_hssl_readout_error_does_not_suggest_the_same_key():
    assert "did you mean 'method.readout'" not in user_error("method.readout=invariant")


def test_hssl_fiber_bundle_larger_than_group_is_an_error():
    message = user_error("method.fiber_bundle_size=5")
    assert "method.fiber_bundle_size=5 exceeds |G|=4 of group rot4" in message
    assert load_digits("method.fiber_bundle_size=4").method.fiber_bundle_size == 4
    assert load_digits("model.group=rot4flip", "method.fiber_bundle_size=8")


def test_hssl_spread_larger_than_group_is_an_error():
    assert "method.spread=5 exceeds |G|=4" in user_error("method.spread=5")
    assert "spread >= 2" in user_error("method.spread=1")


def test_hssl_rejects_group_element_augmentation():
    assert "group_element=false" in user_error("method.augment.group_element=true")


def test_hssl_on_trivial_group_needs_augmentation():
    message = user_error("model.group=trivial", "method.augment=null")
    assert "trivial group has one fiber" in message


def test_simclr_fiber_bundle_larger_than_group_is_an_error():
    message = user_error("method.name=simclr", "method.fiber_bundle_size=9")
    assert "fiber_bundle_size" in message


def test_unknown_method_name_lists_known_methods():
    message = user_error("method.name=moco")
    assert "unknown method 'moco'" in message
    assert "hssl" in message and "simclr" in message


# ---------------------------------------------------------------- shipped recipes


def test_recipes_are_shipped():
    assert len(RECIPE_FILES) >= 5


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.name)
def test_every_shipped_recipe_loads(path):
    recipe = load_recipe(path)
    assert isinstance(recipe, Recipe)
    assert type(recipe.method) is METHOD_CONFIGS[recipe.method.name]


@pytest.mark.parametrize("path", RECIPE_FILES, ids=lambda p: p.name)
def test_yaml_round_trip_is_exact(path):
    recipe = load_recipe(path)
    text = recipe.to_yaml()
    assert not any(line.startswith("base:") for line in text.splitlines())
    again = recipe_from_yaml(text)
    assert again == recipe
    assert type(again.method) is type(recipe.method)
    assert again.to_yaml() == text


def test_round_trip_keeps_overrides_and_null_augment():
    recipe = load_digits("model.group=rot4flip", "method.augment=null", "train.grad_clip=1.5")
    again = recipe_from_yaml(recipe.to_yaml())
    assert again == recipe
    assert again.method.augment is None
    assert again.train.grad_clip == 1.5


def test_recipe_from_yaml_applies_overrides():
    text = load_digits().to_yaml()
    assert recipe_from_yaml(text, ["probe.steps=7"]).probe.steps == 7
    with pytest.raises(HsslUserError, match="checkpoint recipe: unknown recipe key 'probe.stps'"):
        recipe_from_yaml(text, ["probe.stps=7"])


def test_derived_recipes_inherit_their_base():
    theory = load_recipe(RECIPES / "digits_rot4_theory.yaml")
    digits = load_digits()
    assert theory.method.augment is None
    assert theory.model == digits.model
    assert theory.optim == digits.optim
    simclr = load_recipe(RECIPES / "digits_rot4_theory_simclr.yaml")
    assert simclr.method.augment.group_element is True
    assert simclr.method.temperature == digits.method.temperature
