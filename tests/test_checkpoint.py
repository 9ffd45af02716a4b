"""Checkpoints and training state: safetensors round trips, atomic writes, bad files."""

import json
import os

import pytest
import safetensors.torch
import torch
import yaml

from hssl_cli import __version__
from hssl_cli.checkpoint import (
    CHECKPOINT_FORMAT,
    TRAIN_STATE_FORMAT,
    atomic_save,
    canonical_state,
    load_backbone,
    load_train_state,
    read_checkpoint,
    read_safetensors,
    save_checkpoint,
    save_train_state,
)
from hssl_cli.errors import HsslUserError
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.recipe import validate_recipe

SHAPES = {"input": [1, 32, 32], "fibers": [4, 4]}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    recipe = validate_recipe(
        {
            "data": {"name": "digits"},
            "model": {"group": "rot4", "widths": [2, 4]},
            "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
            "train": {"epochs": 3},
        }
    )
    backbone = build_backbone(recipe.model, 1)
    objective = build_objective(recipe.method, backbone)
    # One training step so BatchNorm statistics and weights are not at their init values.
    images = torch.rand(4, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    objective(backbone, images)["loss"].backward()
    backbone.set_normalization([0.25], [0.5])
    return recipe, backbone, objective


@pytest.fixture(scope="module")
def saved(model, tmp_path_factory):
    recipe, backbone, objective = model
    path = tmp_path_factory.mktemp("run") / "checkpoint.safetensors"
    backbone.train()
    save_checkpoint(path, backbone, objective, recipe, epoch=3, feature_shapes=SHAPES)
    return path


def test_read_checkpoint_returns_recipe_epoch_and_metadata(model, saved):
    recipe = model[0]
    checkpoint = read_checkpoint(saved)
    assert checkpoint.recipe == recipe
    assert checkpoint.epoch == 3
    assert checkpoint.input_shape == [1, 32, 32]
    meta = checkpoint.metadata
    assert meta["format"] == CHECKPOINT_FORMAT
    assert meta["hssl_version"] == __version__
    assert meta["group"] == "rot4"
    assert meta["recipe"] == recipe.to_yaml()
    assert yaml.safe_load(meta["recipe"])["model"]["widths"] == [2, 4]
    assert json.loads(meta["feature_shapes"]) == SHAPES


def test_checkpoint_holds_backbone_and_objective_weights(model, saved):
    _, backbone, objective = model
    checkpoint = read_checkpoint(saved)
    backbone_weights = checkpoint.weights("backbone.")
    assert set(backbone_weights) == set(canonical_state(backbone))
    assert set(checkpoint.weights("objective.")) == set(canonical_state(objective))
    assert any(key.startswith("head.") for key in checkpoint.weights("objective."))
    for key, value in canonical_state(backbone).items():
        assert torch.equal(backbone_weights[key], value), key
    torch.testing.assert_close(backbone_weights["input_mean"], torch.tensor([0.25]))


def test_load_backbone_rebuilds_an_equal_model_in_eval_mode(model, saved):
    _, backbone, _ = model
    loaded = load_backbone(read_checkpoint(saved), "test")
    assert not loaded.training
    images = torch.rand(3, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    backbone.eval()
    try:
        with torch.no_grad():
            expected, got = backbone(images), loaded(images)
    finally:
        backbone.train()
    torch.testing.assert_close(got.full, expected.full, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.invariant, expected.invariant, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.feature_map, expected.feature_map, atol=1e-6, rtol=0)


def test_saving_in_eval_mode_gives_the_same_keys(model, tmp_path):
    recipe, backbone, objective = model
    backbone.eval()
    try:
        eval_keys = set(backbone.state_dict())
        save_checkpoint(tmp_path / "eval.safetensors", backbone, objective, recipe, 1, SHAPES)
        assert not backbone.training  # saving leaves the mode alone
    finally:
        backbone.train()
    train_keys = set(backbone.state_dict())
    assert eval_keys > train_keys  # escnn caches expanded filters as buffers in eval mode
    save_checkpoint(tmp_path / "train.safetensors", backbone, objective, recipe, 1, SHAPES)
    assert backbone.training
    eval_saved = read_safetensors(tmp_path / "eval.safetensors", CHECKPOINT_FORMAT)[0]
    train_saved = read_safetensors(tmp_path / "train.safetensors", CHECKPOINT_FORMAT)[0]
    assert set(eval_saved) == set(train_saved)
    assert {key.removeprefix("backbone.") for key in eval_saved if "backbone." in key} == (
        train_keys
    )


def test_overrides_when_reading(saved):
    assert read_checkpoint(saved, ["probe.steps=5"]).recipe.probe.steps == 5
    with pytest.raises(HsslUserError, match="checkpoint recipe: unknown recipe key 'probe.stps'"):
        read_checkpoint(saved, ["probe.stps=5"])


def test_model_override_that_does_not_fit_the_weights(saved):
    checkpoint = read_checkpoint(saved, ["model.widths=[2,8]"])
    with pytest.raises(HsslUserError, match="does not fit the model its recipe describes"):
        load_backbone(checkpoint, str(saved))


# ---------------------------------------------------------------- bad files


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("hello, this is not a checkpoint at all\n")
    with pytest.raises(HsslUserError, match="is not a readable safetensors checkpoint") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)


def test_safetensors_without_hssl_metadata(tmp_path):
    path = tmp_path / "plain.safetensors"
    safetensors.torch.save_file({"weight": torch.zeros(3)}, str(path))
    with pytest.raises(HsslUserError, match="is a safetensors file but not an hssl checkpoint"):
        read_checkpoint(path)
    safetensors.torch.save_file({"weight": torch.zeros(3)}, str(path), metadata={"format": "x"})
    with pytest.raises(HsslUserError, match="not an hssl checkpoint \\(format 'x'\\)"):
        read_checkpoint(path)


@pytest.mark.parametrize("keep", [0.5, 0.99, 40, 6, 0])
def test_truncated_checkpoint(saved, tmp_path, keep):
    data = saved.read_bytes()
    size = int(len(data) * keep) if isinstance(keep, float) else keep
    path = tmp_path / "truncated.safetensors"
    path.write_bytes(data[:size])
    with pytest.raises(HsslUserError, match="is not a readable safetensors checkpoint"):
        read_checkpoint(path)


def test_missing_checkpoint(tmp_path):
    path = tmp_path / "missing.safetensors"
    with pytest.raises(HsslUserError, match="checkpoint not found") as info:
        read_checkpoint(path)
    assert str(path) in str(info.value)
    with pytest.raises(HsslUserError, match="checkpoint not found"):
        read_checkpoint(tmp_path)  # a directory is no file either


def test_checkpoint_is_not_a_train_state(saved):
    with pytest.raises(HsslUserError, match="not an hssl training state"):
        read_safetensors(saved, TRAIN_STATE_FORMAT)


def damaged(tmp_path, **changes):
    metadata = {
        "format": CHECKPOINT_FORMAT,
        "recipe": "method: {name: hssl}\n",
        "epoch": "1",
        "feature_shapes": json.dumps(SHAPES),
        **changes,
    }
    metadata = {k: v for k, v in metadata.items() if v is not None}
    path = tmp_path / "damaged.safetensors"
    atomic_save({"w": torch.zeros(2)}, metadata, path)
    return path


def test_damaged_metadata_is_a_user_error(tmp_path):
    assert read_checkpoint(damaged(tmp_path)).epoch == 1
    with pytest.raises(HsslUserError, match="has damaged metadata"):
        read_checkpoint(damaged(tmp_path, epoch="three"))
    with pytest.raises(HsslUserError, match="has damaged metadata"):
        read_checkpoint(damaged(tmp_path, feature_shapes=None))
    with pytest.raises(HsslUserError, match="has damaged metadata"):
        read_checkpoint(damaged(tmp_path, recipe=None))


def test_unparsable_stored_recipe_is_a_user_error(tmp_path):
    with pytest.raises(HsslUserError, match="damaged"):
        read_checkpoint(damaged(tmp_path, recipe="model: [unclosed\n"))


# ---------------------------------------------------------------- atomic writes


def test_atomic_save_replaces_and_leaves_no_temp_files(tmp_path):
    path = tmp_path / "nested" / "dir" / "file.safetensors"
    atomic_save({"w": torch.zeros(3)}, {"format": "a"}, path)
    atomic_save({"w": torch.arange(5.0), "v": torch.ones(2, 2)}, {"format": "b"}, path)
    assert os.listdir(path.parent) == ["file.safetensors"]
    tensors, metadata = read_safetensors(path, "b")
    assert metadata == {"format": "b"}
    assert torch.equal(tensors["w"], torch.arange(5.0))
    assert torch.equal(tensors["v"], torch.ones(2, 2))


def test_atomic_save_makes_tensors_contiguous(tmp_path):
    path = tmp_path / "t.safetensors"
    transposed = torch.arange(6.0).view(2, 3).T
    atomic_save({"t": transposed}, {"format": "f"}, path)
    assert torch.equal(read_safetensors(path, "f")[0]["t"], transposed)


def test_failed_save_keeps_the_previous_file(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.safetensors"
    atomic_save({"w": torch.arange(4.0)}, {"format": "old"}, path)
    before = path.read_bytes()

    def broken_save_file(tensors, filename, metadata=None):
        with open(filename, "wb") as handle:
            handle.write(b"half a file")
        raise RuntimeError("disk full")

    monkeypatch.setattr(safetensors.torch, "save_file", broken_save_file)
    with pytest.raises(RuntimeError, match="disk full"):
        atomic_save({"w": torch.arange(9.0)}, {"format": "new"}, path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["checkpoint.safetensors"]


# ---------------------------------------------------------------- training state


def tiny_net():
    return torch.nn.Sequential(
        torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 2)
    )


def train_steps(net, optimizer, steps, seed):
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        optimizer.zero_grad()
        net(torch.randn(6, 3, generator=generator)).pow(2).sum().backward()
        optimizer.step()


def as_lists(value):
    """JSON stores tuples (AdamW's betas) as lists; compare groups up to that."""
    if isinstance(value, dict):
        return {k: as_lists(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [as_lists(v) for v in value]
    return value


OPTIMIZERS = {
    "adamw": lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05),
    "sgd": lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=1e-4),
}


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_train_state_round_trip(name, tmp_path):
    make = OPTIMIZERS[name]
    torch.manual_seed(3)
    net = tiny_net()
    optimizer = make(net.parameters())
    train_steps(net, optimizer, 2, seed=4)
    path = tmp_path / "train_state.safetensors"
    save_train_state(path, optimizer, epoch=2, step=7)
    after_save = torch.rand(5)

    resumed_net = tiny_net()
    resumed_net.load_state_dict(net.state_dict())
    resumed = make(resumed_net.parameters())
    torch.rand(11)  # move the RNG on; loading must bring it back
    assert load_train_state(path, resumed) == (2, 7)
    assert torch.equal(torch.rand(5), after_save)

    original, restored = optimizer.state_dict(), resumed.state_dict()
    assert as_lists(restored["param_groups"]) == as_lists(original["param_groups"])
    assert set(restored["state"]) == set(original["state"]) == set(range(6))
    for index, values in original["state"].items():
        assert set(restored["state"][index]) == set(values)
        for key, value in values.items():
            assert torch.equal(restored["state"][index][key], value), (index, key)
    if name == "adamw":
        assert all(float(s["step"]) == 2 for s in restored["state"].values())

    # Continuing from the restored state matches continuing the original run.
    train_steps(net, optimizer, 1, seed=5)
    train_steps(resumed_net, resumed, 1, seed=5)
    for a, b in zip(net.parameters(), resumed_net.parameters(), strict=True):
        assert torch.equal(a, b)


def test_fresh_optimizer_state_round_trips(tmp_path):
    optimizer = torch.optim.SGD(tiny_net().parameters(), lr=0.1)
    path = tmp_path / "train_state.safetensors"
    save_train_state(path, optimizer, epoch=0, step=0)
    resumed = torch.optim.SGD(tiny_net().parameters(), lr=0.5)
    assert load_train_state(path, resumed) == (0, 0)
    assert resumed.param_groups[0]["lr"] == 0.1
    assert resumed.state_dict()["state"] == {}


def test_train_state_metadata(tmp_path):
    optimizer = torch.optim.SGD(tiny_net().parameters(), lr=0.1)
    path = tmp_path / "train_state.safetensors"
    save_train_state(path, optimizer, epoch=4, step=40)
    tensors, metadata = read_safetensors(path, TRAIN_STATE_FORMAT)
    assert metadata["format"] == TRAIN_STATE_FORMAT
    assert metadata["hssl_version"] == __version__
    assert (metadata["epoch"], metadata["step"]) == ("4", "40")
    assert "rng.cpu" in tensors
    with pytest.raises(HsslUserError, match="not an hssl checkpoint"):
        read_checkpoint(path)
    with pytest.raises(HsslUserError, match="training state not found"):
        load_train_state(tmp_path / "none.safetensors", optimizer)


def test_train_state_of_other_parameter_groups_is_a_user_error(tmp_path):
    net = tiny_net()
    grouped = torch.optim.SGD(
        [{"params": list(net[0].parameters())}, {"params": list(net[1:].parameters())}], lr=0.1
    )
    path = tmp_path / "train_state.safetensors"
    save_train_state(path, grouped, epoch=1, step=3)
    with pytest.raises(HsslUserError, match="optimiser of another parameter layout"):
        load_train_state(path, torch.optim.SGD(tiny_net().parameters(), lr=0.1))
