"""Grid expansion, value typing, run names and ablation files."""

from pathlib import Path

import pytest
import yaml

from hssl_cli.ablation.study import (
    Study,
    add_axes,
    format_value,
    load_ablation_file,
    parse_grid_option,
    short_axis_names,
    split_values,
    validate_runs,
)
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import load_recipe, parse_override

RECIPES = Path(__file__).parents[2] / "recipes"


def study(*grid: str, seeds: int = 1, overrides: tuple[str, ...] = ()) -> Study:
    return Study(
        name="t",
        recipe=RECIPES / "digits_rot4.yaml",
        axes=[parse_grid_option(text) for text in grid],
        seeds=list(range(seeds)),
        overrides=list(overrides),
    )


def test_cartesian_product_times_seeds() -> None:
    runs = study(
        "model.structure=equivariant,unstructured", "optim.lr=0.1,0.01,1e-3", seeds=2
    ).runs()
    assert len(runs) == 2 * 3 * 2
    combos = {(r.levels["model.structure"], r.levels["optim.lr"], r.seed) for r in runs}
    assert len(combos) == 12
    assert len({r.name for r in runs}) == 12
    first = runs[0]
    assert first.overrides == ("model.structure=equivariant", "optim.lr=0.1", "seed=0")
    assert runs[1].seed == 1 and runs[1].levels == first.levels  # seeds innermost


def test_values_are_typed_as_yaml() -> None:
    axis = parse_grid_option("optim.lr=0.1,1e-3,3")
    assert [level.value for level in axis.levels] == [0.1, 0.001, 3]
    assert axis.numeric
    axis = parse_grid_option("method.augment=null,{hflip: 0.5}")
    assert [level.value for level in axis.levels] == [None, {"hflip": 0.5}]
    assert not axis.numeric
    assert not parse_grid_option("method.all_fibers_positive=true,false").numeric


def test_overrides_reach_the_recipe_typed() -> None:
    runs = study("train.epochs=1,2", "method.augment=null").runs()
    recipes = [load_recipe(run.recipe, list(run.overrides)) for run in runs]
    assert [recipe.train.epochs for recipe in recipes] == [1, 2]
    assert all(recipe.method.augment is None for recipe in recipes)


def test_split_keeps_brackets_together() -> None:
    assert split_values("a, [1, 2] ,{x: 1, y: 2}") == ["a", "[1, 2]", "{x: 1, y: 2}"]


def test_format_value_round_trips_through_set() -> None:
    for value in ["equivariant", 3, 0.25, None, True, [0.2, 1.0], {"hflip": 0.5}, "null", "1"]:
        text = format_value(value)
        assert parse_override(f"a.b={text}")[1] == value


def test_run_names_are_readable_and_unambiguous() -> None:
    assert short_axis_names(["model.structure", "optim.lr"]) == {
        "model.structure": "structure",
        "optim.lr": "lr",
    }
    assert short_axis_names(["method.augment.hflip", "model.hflip"]) == {
        "method.augment.hflip": "augment.hflip",
        "model.hflip": "model.hflip",
    }
    runs = study("model.structure=equivariant", "method.augment.crop_scale=[0.2, 1.0]").runs()
    assert runs[0].name == "structure=equivariant_crop_scale=0.2-1.0_seed0"
    assert "/" not in runs[0].name and " " not in runs[0].name


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("model.structure", "KEY=V1,V2"),
        ("model.structure=", "KEY=V1,V2"),
        ("model.structure=a,,b", "empty value"),
        ("seed=1,2", "--seeds"),
        ("model..x=1", "not a recipe key"),
        ("optim.lr=0.1,0.1", "repeats"),
        ("recipe=nowhere.yaml", "not found"),
    ],
)
def test_bad_grid_options(text: str, fragment: str) -> None:
    with pytest.raises(HsslUserError, match=fragment):
        parse_grid_option(text)


def test_bad_key_or_value_is_found_before_any_run() -> None:
    with pytest.raises(HsslUserError, match="model.nosuchkey"):
        validate_runs(study("model.nosuchkey=1,2"))
    with pytest.raises(HsslUserError, match="model.structure"):
        validate_runs(study("model.structure=equivariant,sideways"))


def test_recipe_axis_and_later_grid_replaces_file_axis() -> None:
    axis = parse_grid_option(
        f"recipe={RECIPES / 'digits_rot4.yaml'},{RECIPES / 'digits_rot4_simclr.yaml'}"
    )
    assert [level.label for level in axis.levels] == ["digits_rot4", "digits_rot4_simclr"]
    runs = Study(name="t", recipe=RECIPES / "digits_rot4.yaml", axes=[axis]).runs()
    assert runs[1].recipe == RECIPES / "digits_rot4_simclr.yaml"
    merged = add_axes([parse_grid_option("optim.lr=1,2")], [parse_grid_option("optim.lr=3")])
    assert [level.value for level in merged[0].levels] == [3]


def test_ablation_file(tmp_path: Path) -> None:
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "s.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "description": "structure against method",
                "recipe": str(RECIPES / "digits_rot4.yaml"),
                "seeds": 2,
                "metric": "full_top1",
                "set": {"train.epochs": 1, "optim.lr": 1.0e-3},
                "axes": {
                    "model.structure": ["equivariant", "unstructured"],
                    "method": {
                        "H-SSL": {},
                        "SimCLR": {"recipe": str(RECIPES / "digits_rot4_simclr.yaml")},
                        "random init": {"train.epochs": 0},
                    },
                },
            },
            sort_keys=False,
        )
    )
    loaded = load_ablation_file(path)
    assert loaded.name == "s" and loaded.seeds == [0, 1] and loaded.metric == "full_top1"
    assert loaded.description == "structure against method"
    assert loaded.overrides == ["train.epochs=1", "optim.lr=0.001"]
    runs = validate_runs(loaded)
    assert len(runs) == 2 * 3 * 2
    simclr = [r for r in runs if r.levels["method"] == "SimCLR"]
    assert all(r.recipe.name == "digits_rot4_simclr.yaml" for r in simclr)
    random_init = next(r for r in runs if r.levels["method"] == "random init")
    assert load_recipe(random_init.recipe, list(random_init.overrides)).train.epochs == 0
    assert "method=random-init" in random_init.name


@pytest.mark.parametrize(
    "content, fragment",
    [
        ({"recipe": "x.yaml"}, "recipe not found"),
        ({"recipe": "../digits_rot4.yaml", "axis": {}}, "did you mean 'axes'"),
        ({"recipe": "../digits_rot4.yaml", "metric": "top"}, "unknown metric 'top'"),
        ({"recipe": "../digits_rot4.yaml", "seeds": 0}, "at least 1"),
        ({"recipe": "../digits_rot4.yaml", "axes": {"optim.lr": []}}, "no values"),
    ],
)
def test_bad_ablation_files(content: dict, fragment: str, tmp_path: Path) -> None:
    (tmp_path / "digits_rot4.yaml").write_text((RECIPES / "digits_rot4.yaml").read_text())
    (tmp_path / "studies").mkdir()
    path = tmp_path / "studies" / "bad.yaml"
    path.write_text(yaml.safe_dump(content))
    with pytest.raises(HsslUserError, match=fragment):
        load_ablation_file(path)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"recipe: x.yaml\n\xff\xfe\n", "line 2 is not UTF-8"),
        (b"recipe: &r x.yaml\nset: {data.name: *r}\n", "aliases"),
        (b"seeds: 1\nseeds: 2\n", "duplicate key 'seeds'"),
        (b"axes: " + b"[" * 100 + b"]" * 100, "nested deeper"),
    ],
)
def test_unreadable_ablation_files_are_one_line(
    content: bytes, fragment: str, tmp_path: Path
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_bytes(content)
    with pytest.raises(HsslUserError, match=fragment) as info:
        load_ablation_file(path)
    assert "\n" not in str(info.value)


def test_shipped_ablation_files_validate() -> None:
    files = sorted((RECIPES / "ablations").glob("*.yaml"))
    assert {f.stem for f in files} >= {
        "structure_cpu",
        "structure_cifar",
        "fiber_bundle_cpu",
        "fiber_bundle_cifar",
        "pretext_tasks_cpu",
        "pretext_tasks_cifar",
    }
    for path in files:
        runs = validate_runs(load_ablation_file(path))
        assert runs, path
