"""A corpus of bad recipe inputs, the cases an adversarial probe of the CLI found (issue 12):
each is refused with one line that names the problem, in ``load_recipe`` and through
``hssl pretrain`` (exit 2, nothing trained). Valid look-alikes are accepted."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from hssl_cli.cli.main import app
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import MAX_BASE_DEPTH, MAX_RECIPE_BYTES, load_recipe
from hssl_cli.safe_yaml import MAX_DEPTH

DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "digits_rot4.yaml"
TINY = {
    "data": {"name": "digits", "limit_train": 128, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 4]},
    "method": {"name": "hssl", "projector_hidden_dim": 16, "projector_out_dim": 8},
    "train": {"epochs": 1, "batch_size": 64},
}

# An alias bomb: nine lines that expand to 9**7 strings.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]\n"
    for previous, name in zip("abcdef", "bcdefg", strict=True)
)


def tiny_with(text: str) -> str:
    return yaml.safe_dump(TINY) + text


def base_chain(folder: Path, length: int) -> Path:
    for index in range(length):
        (folder / f"r{index}.yaml").write_text(f"base: r{index + 1}.yaml\n")
    (folder / f"r{length}.yaml").write_text(yaml.safe_dump(TINY))
    return folder / "r0.yaml"


def symlink_loop(folder: Path) -> Path:
    os.symlink(folder / "b.yaml", folder / "a.yaml")
    os.symlink(folder / "a.yaml", folder / "b.yaml")
    return folder / "a.yaml"


Recipe = str | bytes | Callable[[Path], Path]

# (case id, recipe text / bytes / builder, --set overrides, words the message must hold)
BAD: list[tuple[str, Recipe, list[str], str]] = [
    ("not-utf8", b"data:\n  name: digits\n\xff\xfe bad\n", [], "line 3 is not UTF-8"),
    ("deep-nesting", "a: " + "[" * 2000 + "]" * 2000, [], f"nested deeper than {MAX_DEPTH}"),
    ("deep-mapping", "a:\n" + "".join(" " * i + "b:\n" for i in range(1, 200)), [], "nested"),
    ("long-base-chain", lambda d: base_chain(d, 40), [], "chain is more than"),
    ("symlink-loop", symlink_loop, [], "leads back to itself"),
    ("alias-bomb", BOMB, [], "aliases"),
    (
        "anchor-alias-in-section",
        tiny_with("optim: {lr: &x 0.1, weight_decay: *x}\n"),
        [],
        "aliases",
    ),
    ("duplicate-key", tiny_with("seed: 1\nseed: 2\n"), [], "duplicate key 'seed'"),
    ("duplicate-nested-key", "train: {epochs: 1, epochs: 2}\n", [], "duplicate key 'epochs'"),
    ("number-key", tiny_with("1: 2\n"), [], "a key must be a name"),
    ("method-5-file", "method: 5\n", [], "method is a section"),
    ("method-true-file", "method: true\n", [], "method is a section"),
    ("method-5-set", yaml.safe_dump(TINY), ["method=5"], "method is a section"),
    ("method-true-set", yaml.safe_dump(TINY), ["method=true"], "method is a section"),
    ("base-method-5", "method: {name: essl, base: simclr, base_method: 5}\n", [], "base_method"),
    ("int-tag-on-text", yaml.safe_dump(TINY), ["seed=!!int abc"], "'seed'"),
    ("int-tag-in-file", tiny_with("seed: !!int abc\n"), [], "cannot be read as int"),
    ("bool-tag-in-file", tiny_with("seed: !!bool maybe\n"), [], "cannot be read as bool"),
    ("timestamp-tag", tiny_with("seed: !!timestamp soon\n"), [], "cannot be read as timestamp"),
    ("python-tag", tiny_with("seed: !!python/object/apply:os.system [echo]\n"), [], "YAML"),
    ("python-tag-set", yaml.safe_dump(TINY), ["seed=!!python/name:os.system"], "'seed'"),
    ("int-too-long-to-parse", tiny_with("seed: " + "9" * 5000 + "\n"), [], "cannot be read"),
    ("seed-1e30", yaml.safe_dump(TINY), ["seed=" + "1" + "0" * 30], "'seed'"),
    ("seed-negative", yaml.safe_dump(TINY), ["seed=-1"], "'seed'"),
    ("zero-width", yaml.safe_dump(TINY), ["model.widths=[0]"], "'model.widths'"),
    ("huge-width", yaml.safe_dump(TINY), ["model.widths=[1000000000]"], "'model.widths'"),
    (
        "image-size-3",
        yaml.safe_dump(TINY),
        ["data.image_size=3", "model.widths=[2,4,8]"],
        "data.image_size=3 is too small for backbone cnn with 3 stages",
    ),
    (
        "native-too-small",
        yaml.safe_dump(TINY),
        ["data.image_size=null", "model.widths=[1,1,1,1,1,1,1]"],
        "native size",
    ),
    (
        "e2resnet18-size-4",
        yaml.safe_dump(TINY),
        ["model.backbone=e2resnet18", "data.image_size=4"],
        "at least 8x8",
    ),
    (
        "essl-crop-too-small",
        "data: {image_size: 16}\nmethod: {name: essl, crop_size: 2}\n",
        [],
        "method.crop_size=2 is too small",
    ),
    (
        "translation-window",
        yaml.safe_dump(TINY),
        ["model.group=trivial", "method.fibers=translation", "method.fiber_bundle_size=9"],
        "exceeds the 8x8 feature map",
    ),
    ("huge-image-size", yaml.safe_dump(TINY), ["data.image_size=1000000"], "'data.image_size'"),
    ("huge-batch", yaml.safe_dump(TINY), ["train.batch_size=10000000000"], "'train.batch_size'"),
    (
        "huge-projector",
        yaml.safe_dump(TINY),
        ["method.projector_hidden_dim=" + "9" * 20],
        "'method.projector_hidden_dim'",
    ),
    (
        "crop-ratio-zero",
        yaml.safe_dump(TINY),
        ["method.augment.crop_ratio=[0,0]"],
        "crop_ratio must be",
    ),
    (
        "crop-ratio-reversed",
        yaml.safe_dump(TINY),
        ["method.augment.crop_ratio=[2,1]"],
        "crop_ratio must be",
    ),
    (
        "crop-scale-reversed",
        yaml.safe_dump(TINY),
        ["method.augment.crop_scale=[1,0.5]"],
        "crop_scale must be",
    ),
    (
        "blur-sigma-reversed",
        yaml.safe_dump(TINY),
        ["method.name=equimod", "method.augment.blur_sigma=[2,1]"],
        "blur_sigma must be",
    ),
    (
        "hue-above-half",
        yaml.safe_dump(TINY),
        ["method.augment.jitter=[0.4,0.4,0.4,0.6]"],
        "hue <= 0.5",
    ),
    ("negative-jitter", yaml.safe_dump(TINY), ["method.augment.jitter=[-1,0,0,0]"], "each >= 0"),
    (
        "true-for-float",
        yaml.safe_dump(TINY),
        ["optim.lr=true"],
        "'optim.lr': Input should be a valid number",
    ),
    ("true-for-float-file", tiny_with("optim: {lr: true}\n"), [], "'optim.lr'"),
    ("string-for-float", tiny_with("optim: {lr: '0.1'}\n"), [], "'optim.lr'"),
    ("inf-lr", yaml.safe_dump(TINY), ["optim.lr=.inf"], "finite number"),
    ("overflow-lr", yaml.safe_dump(TINY), ["optim.lr=1e999"], "finite number"),
    ("nan-temperature", yaml.safe_dump(TINY), ["method.temperature=.nan"], "finite number"),
    ("inf-grad-clip", yaml.safe_dump(TINY), ["train.grad_clip=.inf"], "finite number"),
    ("inf-crop", yaml.safe_dump(TINY), ["method.augment.crop_ratio=[1,.inf]"], "finite number"),
    ("one-for-bool", yaml.safe_dump(TINY), ["data.download=1"], "'data.download'"),
    ("one-for-in-memory", yaml.safe_dump(TINY), ["data.in_memory=1"], "auto, true or false"),
    ("nul-in-path", yaml.safe_dump(TINY), ['data.path="a\\0b"'], "NUL"),
    ("alias-in-set", yaml.safe_dump(TINY), ["model.widths=[&a 4, *a]"], "'model.widths'"),
    (
        "bomb-in-set",
        yaml.safe_dump(TINY),
        ["model.widths=" + BOMB.replace("\n", " ")],
        "'model.widths'",
    ),
    (
        "deep-set-value",
        yaml.safe_dump(TINY),
        ["model.widths=" + "[" * 500 + "]" * 500],
        "'model.widths'",
    ),
    (
        "deep-set-key",
        yaml.safe_dump(TINY),
        [".".join(["a"] * 500) + "=1"],
        "no recipe key is nested",
    ),
    ("huge-kernel", yaml.safe_dump(TINY), ["model.kernel_size=101"], "'model.kernel_size'"),
    ("huge-epochs", yaml.safe_dump(TINY), ["train.epochs=" + "1" + "0" * 30], "'train.epochs'"),
    ("list-recipe", "- 1\n- 2\n", [], "must be a mapping"),
    ("long-value-echo", yaml.safe_dump(TINY), ["data.name=" + "x" * 100_000], "unknown data set"),
]


@pytest.fixture()
def invoke():
    runner = CliRunner()
    return lambda *args: runner.invoke(app, list(args))


def write_case(folder: Path, recipe: Recipe) -> Path:
    if callable(recipe):
        return recipe(folder)
    path = folder / "case.yaml"
    if isinstance(recipe, bytes):
        path.write_bytes(recipe)
    else:
        path.write_text(recipe)
    return path


def assert_one_line(message: str) -> None:
    assert message and "\n" not in message and "Traceback" not in message
    assert len(message) <= 600, len(message)


@pytest.mark.parametrize(
    ("recipe", "overrides", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_input_is_one_line_naming_the_problem(tmp_path, recipe, overrides, words):
    path = write_case(tmp_path, recipe)
    with pytest.raises(HsslUserError) as info:
        load_recipe(path, overrides)
    assert_one_line(str(info.value))
    assert words in str(info.value)


@pytest.mark.parametrize(
    ("recipe", "overrides", "words"), [c[1:] for c in BAD], ids=[c[0] for c in BAD]
)
def test_bad_input_through_pretrain_exits_2_with_one_line(
    tmp_path, invoke, recipe, overrides, words
):
    path = write_case(tmp_path, recipe)
    sets = [arg for override in overrides for arg in ("--set", override)]
    result = invoke(
        "pretrain",
        "--recipe",
        str(path),
        *sets,
        "--out",
        str(tmp_path / "run"),
        "--device",
        "cpu",
        "--quiet",
    )
    assert result.exit_code == 2, (result.exception, result.output)
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and "Traceback" not in result.output, result.stderr
    assert words in lines[0]
    assert not (tmp_path / "run" / "checkpoint.safetensors").exists()


def test_recipe_larger_than_the_bound_is_refused_unread(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("seed: 1\n" + "#" * MAX_RECIPE_BYTES)
    with pytest.raises(HsslUserError, match="larger than"):
        load_recipe(path)


def test_directory_as_recipe_is_not_found(tmp_path):
    with pytest.raises(HsslUserError, match="recipe file not found"):
        load_recipe(tmp_path)


def test_base_chain_at_the_bound_still_loads(tmp_path):
    assert load_recipe(base_chain(tmp_path, MAX_BASE_DEPTH - 1)).train.epochs == 1


# ---------------------------------------------------------------- valid look-alikes


@pytest.mark.parametrize(
    ("line", "key", "value"),
    [
        ("optim: {lr: 1e-3}", "lr", 1e-3),  # YAML 1.2's float, a string to PyYAML's 1.1 rules
        ("optim: {lr: 2.5E+2}", "lr", 250.0),
        ("optim: {lr: 1}", "lr", 1.0),  # an int is a number
        ("optim: {lr: !!float 1}", "lr", 1.0),
    ],
)
def test_numbers_written_as_ints_or_exponents_are_floats(tmp_path, line, key, value):
    path = write_case(tmp_path, tiny_with(line + "\n"))
    got = getattr(load_recipe(path).optim, key)
    assert got == value and type(got) is float


def test_quoted_and_tagged_strings_stay_strings(tmp_path):
    path = write_case(tmp_path, "data: {name: npz, path: !!str 5, test_path: '7'}\n")
    recipe = load_recipe(path)
    assert (recipe.data.path, recipe.data.test_path) == ("5", "7")


def test_anchor_without_alias_and_merge_key_are_accepted(tmp_path):
    path = write_case(tmp_path, tiny_with("probe: {<<: {steps: 7}, knn_k: &k 5}\n"))
    recipe = load_recipe(path)
    assert (recipe.probe.steps, recipe.probe.knn_k) == (7, 5)


@pytest.mark.parametrize(
    ("overrides", "side"),
    [
        (["data.image_size=2", "model.widths=[2, 4]"], 2),  # one max-pool: 2 -> 1
        (["data.image_size=8", "model.backbone=e2resnet18"], 8),
        (["data.image_size=1", "model.backbone=resnet18", "model.group=trivial"], 1),
    ],
)
def test_smallest_sides_each_backbone_takes_are_accepted(overrides, side):
    assert load_recipe(DIGITS, overrides).data.image_size == side
