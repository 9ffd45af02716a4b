"""Property: any recipe file and ``--set`` overrides either validate or fail in one line.

Hypothesis writes recipes and overrides from the schema's own keys (``recipe_keys``), junk
keys, wrong-typed and odd YAML values (tags, aliases, deep nesting, huge numbers, inf and
nan) and raw bytes. Loading must give a :class:`Recipe` or an :class:`HsslUserError` whose
message is one short line; any other exception is a bug. Each input that fails validation
also goes through ``hssl pretrain`` in-process: exit 2, one stderr line, no traceback
(inputs that validate are not run, so nothing trains). Derandomised, so CI is reproducible.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hssl_cli.cli.main import app
from hssl_cli.config import METHOD_CONFIGS, Recipe
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import load_recipe
from hssl_cli.recipe_keys import recipe_keys

# HSSL_FUZZ_EXAMPLES=5000 fuzzes longer, from a random seed.
EXAMPLES = int(os.environ.get("HSSL_FUZZ_EXAMPLES", "300"))
DERANDOMIZE = "HSSL_FUZZ_EXAMPLES" not in os.environ

TINY = {
    "data": {"name": "digits", "limit_train": 128, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 4]},
    "method": {"name": "hssl", "projector_hidden_dim": 16, "projector_out_dim": 8},
    "train": {"epochs": 1, "batch_size": 64},
}

KEYS = sorted({key.path for key in recipe_keys()} | {"method", "model", "data", "base"})
WORDS = [
    *METHOD_CONFIGS,
    *("rot4", "rot8", "rot4flip", "trivial", "flip", "cnn", "resnet18", "e2resnet18"),
    *("max", "mean", "none", "translation", "group", "simclr", "fiber", "invariant"),
    *("digits", "npz", "imagefolder", "jsonl", "tensorboard", "auto", "rotation4", "jigsaw4"),
]
# YAML texts that typed values cannot come from: tags, aliases, anchors, odd scalars.
ODD_YAML = [
    "!!int abc",
    "!!float x",
    "!!bool maybe",
    "!!timestamp soon",
    "!!binary ~~",
    "!!str 5",
    "!!python/object/apply:os.system ['true']",
    "!!set {a, b}",
    "!!omap [a: 1]",
    "!foo 1",
    "*a",
    "&a [1, *a]",
    "[&a 1, *a]",
    "{a: 1, a: 2}",
    "{1: 2}",
    "{? [a]: b}",
    "~",
    "null",
    ".inf",
    "-.inf",
    ".nan",
    "1e999",
    "-1e-999",
    "0x1F",
    "0o17",
    "0b101",
    "1_000",
    "1:30",
    "2001-12-14",
    "yes",
    "off",
    "'quoted'",
    '"\\x00"',
    "[" * 60 + "]" * 60,
    "9" * 5000,
    "1" + "0" * 30,
    "-" + "1" + "0" * 30,
    "[1, [2, [3]]]",
    "{widths: [1]}",
    "- a",
    "a: b",
    "[",
    "]",
    "{",
    "'",
    '"',
    "#",
    "|\n  x",
    "? x",
    "---",
    "...",
    "%YAML 1.1",
    "\t",
    "\x00",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-3, max_value=70),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=0, max_value=1),
    st.sampled_from(WORDS),
    st.text(max_size=12),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
junk_keys = st.from_regex(r"\A[A-Za-z_]\w{0,6}(\.[A-Za-z_]\w{0,6}){0,4}\Z")
keys = st.one_of(st.sampled_from(KEYS), junk_keys)

# The keys each method takes, with their types, so that most changes are of the right type
# and size and many recipes get past the field checks to the cross-section ones (sizes
# against the group, the model against the images, a method against the model).
METHOD_KEYS = {
    name: [key for key in recipe_keys(name) if key.type != "section" and key.path != "method.name"]
    for name in METHOD_CONFIGS
}
NUMBERS = [0.0, 0.1, 0.25, 0.5, 1.0, 1.5, 2.0]


def typed_values(type_text: str) -> st.SearchStrategy[Any]:
    """Values of a key's listed type (``int >= 1``, ``[float, float]``, ``max | mean``)."""
    choices = [choice for choice in type_text.split(" | ") if " " not in choice]
    if type_text.startswith("int"):
        return st.integers(min_value=0, max_value=40) | st.integers(min_value=-2, max_value=2**33)
    if type_text.startswith("float"):
        return st.sampled_from(NUMBERS) | st.floats(min_value=-1, max_value=100)
    if type_text.startswith("bool"):
        return st.booleans()
    if type_text.startswith("[float"):
        size = type_text.count("float")
        return st.lists(st.sampled_from([*NUMBERS, 0.75, 4 / 3]), min_size=size, max_size=size)
    if type_text.startswith("list[int"):
        return st.lists(st.integers(min_value=0, max_value=9), min_size=0, max_size=5)
    if type_text.startswith("list["):
        return st.lists(st.sampled_from(WORDS), max_size=2)
    if type_text.startswith("str"):
        return st.sampled_from(WORDS) | st.text(max_size=8)
    literal = {"null": None, "true": True, "false": False}
    return st.sampled_from([literal.get(choice, choice) for choice in choices] or WORDS)


@st.composite
def typed_changes(draw: st.DrawFn) -> tuple[str, list[tuple[str, Any]]]:
    """A method, and a few of its keys with values of their types (now and then wild)."""
    method = draw(st.sampled_from(sorted(METHOD_KEYS)))
    changes = []
    for key in draw(st.lists(st.sampled_from(METHOD_KEYS[method]), max_size=3)):
        wild = draw(st.integers(min_value=0, max_value=9)) == 0
        changes.append((key.path, draw(values if wild else typed_values(key.type))))
    return method, changes


def yaml_text(value: Any) -> str:
    """One value as ``--set`` would get it: YAML flow style or JSON (``NaN`` stays text)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return text.removesuffix("\n...\n").strip()


value_texts = st.one_of(
    values.map(yaml_text),
    values.map(json.dumps),
    st.sampled_from(ODD_YAML),
    st.text(max_size=20),
)


@st.composite
def override_lists(draw: st.DrawFn) -> list[str]:
    """``--set`` texts: typed values of a method's keys, or any key with an odd value."""
    if draw(st.booleans()):
        method, changes = draw(typed_changes())
        sets = [f"{key}={yaml_text(value)}" for key, value in changes]
        return [f"method.name={method}", *sets] if draw(st.booleans()) else sets
    return draw(st.lists(st.builds(lambda k, v: f"{k}={v}", keys, value_texts), max_size=2))


def put(tree: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    for part in parents:
        child = tree.get(part)
        tree[part] = child = child if isinstance(child, dict) else {}
        tree = child
    tree[last] = value


@st.composite
def recipe_files(draw: st.DrawFn) -> bytes:
    """The tiny recipe with typed or wild changes, a raw YAML line added, or random bytes."""
    kind = draw(st.sampled_from(["typed", "typed", "typed", "wild", "line", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    tree = json.loads(json.dumps(TINY))
    if kind == "typed":
        method, changes = draw(typed_changes())
        tree["method"]["name"] = method
    else:
        changes = draw(st.lists(st.tuples(keys, values), max_size=3))
    for key, value in changes:
        put(tree, key, value)
    text = yaml.safe_dump(tree, width=10**6)
    if kind == "line":
        key = draw(keys)
        indent = draw(st.sampled_from(["", "  "]))
        section = "" if not indent else draw(st.sampled_from(["data:\n", "method:\n", "x:\n"]))
        text = text + section + f"{indent}{key.split('.')[-1]}: {draw(value_texts)}\n"
    return text.encode()


def test_any_recipe_and_overrides_validate_or_fail_in_one_line() -> None:
    outcomes: Counter[str] = Counter()
    runner = CliRunner()

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        derandomize=DERANDOMIZE,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(recipe=recipe_files(), sets=override_lists())
    def check(recipe: bytes, sets: list[str]) -> None:
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "recipe.yaml"
            path.write_bytes(recipe)
            try:
                assert isinstance(load_recipe(path, sets), Recipe)
            except HsslUserError as err:
                message = str(err)
                assert message and "\n" not in message and len(message) <= 600, message
                outcome = "user error"
            else:
                outcome = "valid"
            event(outcome)
            outcomes[outcome] += 1
            if outcome == "valid":
                return
            args = ["pretrain", "--recipe", str(path), "--out", f"{folder}/run", "--quiet"]
            result = runner.invoke(app, [*args, *(a for s in sets for a in ("--set", s))])
            assert result.exit_code == 2, (result.exception, result.output)
            assert "Traceback" not in result.output
            assert len(result.stderr.splitlines()) == 1, result.stderr

    check()
    print(f"fuzzed recipes: {sum(outcomes.values())} inputs, {dict(outcomes)}")
    assert sum(outcomes.values()) >= EXAMPLES
    assert outcomes["valid"] >= 10 and outcomes["user error"] >= 100, outcomes
