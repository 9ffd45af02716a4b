"""The trainer: schedule, weight-decay groups, resuming, divergence and metrics records."""

import json
import math
import os
import random
import shutil
from pathlib import Path

import escnn.nn as enn
import pytest
import torch
from escnn import gspaces

import hssl_cli.objectives
from hssl_cli.checkpoint import (
    TRAIN_STATE_FORMAT,
    cuda_rng_keys,
    read_checkpoint,
    read_safetensors,
)
from hssl_cli.config import ModelConfig, OptimConfig
from hssl_cli.errors import TrainingDiverged
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.recipe import load_recipe, validate_recipe
from hssl_cli.run_files import (
    CHECKPOINT_NAME,
    LOCK_NAME,
    METRICS_NAME,
    RECIPE_NAME,
    TRAIN_STATE_NAME,
)
from hssl_cli.training import (
    learning_rate,
    make_optimizer,
    parameter_groups,
    pretrain,
    trainable_parameters,
)

DIGITS = Path(__file__).resolve().parents[1] / "recipes" / "digits_rot4.yaml"
# A whole warm-up epoch: the first epoch is the same whatever train.epochs says.
TINY = ["data.limit_train=64", "train.batch_size=32", "model.widths=[4,8]", "optim.warmup_epochs=1"]
CPU = torch.device("cpu")

# ---------------------------------------------------------------- schedule


def test_warm_up_then_cosine_to_the_floor() -> None:
    config = OptimConfig(lr=0.1, warmup_epochs=1, min_lr_ratio=0.1)
    steps, epochs = 10, 5  # 10 warm-up steps, then 40 cosine steps

    def rate(step: int) -> float:
        return learning_rate(config, step, steps, epochs)

    assert rate(0) == pytest.approx(0.01)  # linear: (step + 1) / warm-up steps
    assert rate(4) == pytest.approx(0.05)
    assert rate(9) == pytest.approx(0.1)
    assert rate(10) == pytest.approx(0.1)  # the cosine starts at the peak
    assert rate(30) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5))  # half-way
    assert rate(20) == pytest.approx(0.1 * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi / 4))))
    assert rate(50) == pytest.approx(0.01)  # min_lr_ratio * lr at the end
    assert rate(80) == pytest.approx(0.01)  # and after it
    cosine = [rate(step) for step in range(10, 51)]
    assert all(a >= b for a, b in zip(cosine, cosine[1:], strict=False))


def test_schedule_without_warm_up_or_floor() -> None:
    config = OptimConfig(lr=0.2)
    assert learning_rate(config, 0, 4, 2) == pytest.approx(0.2)
    assert learning_rate(config, 4, 4, 2) == pytest.approx(0.1)
    assert learning_rate(config, 8, 4, 2) == pytest.approx(0.0, abs=1e-12)
    half = OptimConfig(lr=0.2, warmup_epochs=0.5)  # fractional warm-up: 2 of 4 steps
    assert [learning_rate(half, s, 4, 2) for s in (0, 1, 2)] == pytest.approx([0.1, 0.2, 0.2])


# ---------------------------------------------------------------- weight-decay groups


def grouped_names(groups: list[dict], *named: tuple[str, torch.nn.Module]) -> list[set[str]]:
    names = {
        id(p): prefix + name for prefix, module in named for name, p in module.named_parameters()
    }
    return [{names[id(p)] for p in group["params"]} for group in groups]


@pytest.fixture(scope="module")
def tiny_cnn() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_backbone(ModelConfig(widths=[4, 8]), in_channels=1)


def test_escnn_cnn_decays_conv_filters_not_batch_norm(tiny_cnn: torch.nn.Module) -> None:
    decay, no_decay = grouped_names(parameter_groups(OptimConfig(), [tiny_cnn]), ("", tiny_cnn))
    assert decay == {"layers.0.weights", "layers.4.weights"}
    # R2Conv keeps its filter as a 1-D vector of basis coefficients: a shape rule
    # (ndim <= 1: no decay) would exempt it.
    assert all(dict(tiny_cnn.named_parameters())[name].ndim == 1 for name in decay)
    assert no_decay == {
        f"layers.{layer}.batch_norm_[4].{kind}" for layer in (1, 5) for kind in ("weight", "bias")
    }


def test_projection_head_decays_linear_weights_only(tiny_cnn: torch.nn.Module) -> None:
    recipe = validate_recipe(
        {
            "model": {"widths": [4, 8]},
            "method": {"name": "simclr", "projector_hidden_dim": 8, "projector_out_dim": 4},
        }
    )
    objective = build_objective(recipe.method, tiny_cnn)
    groups = parameter_groups(recipe.optim, [tiny_cnn, objective])
    decay, no_decay = grouped_names(groups, ("backbone.", tiny_cnn), ("objective.", objective))
    assert {n for n in decay if n.startswith("objective.")} == {
        "objective.head.0.weight",
        "objective.head.3.weight",
    }
    assert {n for n in no_decay if n.startswith("objective.")} == {
        "objective.head.1.weight",  # BatchNorm1d
        "objective.head.1.bias",
        "objective.head.3.bias",  # Linear bias
    }
    assert "weight_decay" not in groups[0]  # the optimiser's (the recipe's) weight decay
    assert groups[1]["weight_decay"] == 0.0


def test_byol_target_is_in_no_group() -> None:
    recipe = validate_recipe(
        {
            "model": {"widths": [2, 4]},
            "method": {
                "name": "byol",
                "projector_hidden_dim": 8,
                "projector_out_dim": 4,
                "predictor_hidden_dim": 8,
            },
        }
    )
    backbone = build_backbone(recipe.model, 1)
    objective = build_objective(recipe.method, backbone)
    grouped = {
        id(p) for g in parameter_groups(recipe.optim, [backbone, objective]) for p in g["params"]
    }
    assert not grouped & {id(p) for p in objective.target.parameters()}
    assert grouped == {id(p) for p in trainable_parameters([backbone, objective])}


def test_escnn_and_torch_norm_layers_and_biases_get_no_decay() -> None:
    space = gspaces.rot2dOnR2(4)
    field = enn.FieldType(space, [space.regular_repr] * 2)
    model = torch.nn.ModuleDict(
        {
            "conv": enn.R2Conv(enn.FieldType(space, [space.trivial_repr]), field, 3, bias=True),
            "iid": enn.IIDBatchNorm2d(field),
            "inner": enn.InnerBatchNorm(field),
            "linear": torch.nn.Linear(3, 2),
            "layer_norm": torch.nn.LayerNorm(3),
            "group_norm": torch.nn.GroupNorm(1, 3),
            "instance_norm": torch.nn.InstanceNorm1d(3, affine=True),
        }
    )
    decay, no_decay = grouped_names(parameter_groups(OptimConfig(), [model]), ("", model))
    assert decay == {"conv.weights", "linear.weight"}
    assert "conv.bias" in no_decay and "linear.bias" in no_decay
    parameters = dict(model.named_parameters())
    for prefix in ("iid.", "inner.", "layer_norm.", "group_norm.", "instance_norm."):
        owned = {name for name in parameters if name.startswith(prefix)}
        assert owned and owned <= no_decay, prefix


def test_decay_norm_and_bias_gives_one_group_as_before(tiny_cnn: torch.nn.Module) -> None:
    config = OptimConfig(decay_norm_and_bias=True, weight_decay=0.05)
    groups = parameter_groups(config, [tiny_cnn])
    assert len(groups) == 1
    assert groups[0]["params"] == list(tiny_cnn.parameters())  # same parameters, same order
    optimizer = make_optimizer(config, [tiny_cnn])
    assert len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == 0.05


@pytest.mark.parametrize("name", ["sgd", "adamw"])
def test_make_optimizer_groups(name: str, tiny_cnn: torch.nn.Module) -> None:
    config = OptimConfig(name=name, lr=0.5, weight_decay=0.01)
    optimizer = make_optimizer(config, tiny_cnn)
    assert isinstance(optimizer, torch.optim.SGD if name == "sgd" else torch.optim.AdamW)
    assert [g["weight_decay"] for g in optimizer.param_groups] == [0.01, 0.0]
    assert all(g["lr"] == 0.5 for g in optimizer.param_groups)
    assert sum(len(g["params"]) for g in optimizer.param_groups) == len(list(tiny_cnn.parameters()))


def test_bare_parameters_make_one_decayed_group(tiny_cnn: torch.nn.Module) -> None:
    optimizer = make_optimizer(OptimConfig(weight_decay=0.01), list(tiny_cnn.parameters()))
    assert len(optimizer.param_groups) == 1
    assert optimizer.param_groups[0]["weight_decay"] == 0.01


# ---------------------------------------------------------------- CUDA RNG order


def test_cuda_rng_keys_sort_by_device_number() -> None:
    keys = [f"rng.cuda.{index}" for index in range(12)]
    shuffled = [*keys, "rng.cpu", "optimizer.0.exp_avg", "rng.cuda.x"]
    random.Random(0).shuffle(shuffled)
    assert cuda_rng_keys(shuffled) == keys  # rng.cuda.10 after rng.cuda.9, not after .1
    assert cuda_rng_keys(["rng.cpu"]) == []


# ---------------------------------------------------------------- runs


def tiny_recipe(epochs: int):
    return load_recipe(DIGITS, [*TINY, f"train.epochs={epochs}"])


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return read_checkpoint(folder / CHECKPOINT_NAME).tensors


def records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / METRICS_NAME).read_text().splitlines()]


def without_timing(record: dict) -> dict:
    return {k: v for k, v in record.items() if k not in ("epoch_seconds", "images_per_second")}


@pytest.fixture(scope="module")
def one_epoch(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("runs") / "one"
    pretrain(tiny_recipe(1), folder, CPU, quiet=True)
    return folder


@pytest.fixture(scope="module")
def two_epochs(tmp_path_factory) -> tuple[Path, object]:
    folder = tmp_path_factory.mktemp("runs") / "two"
    return folder, pretrain(tiny_recipe(2), folder, CPU, quiet=True)


def test_metrics_records(one_epoch: Path, two_epochs) -> None:
    folder, result = two_epochs
    lines = records(folder)
    recipe = tiny_recipe(2)
    assert [line["epoch"] for line in lines] == [1, 2]
    assert [line["step"] for line in lines] == [2, 4]  # 64 images / 32 per batch
    for line in lines:
        assert set(line) == {
            "epoch",
            "step",
            "lr",
            "epoch_seconds",
            "images_per_second",
            "loss",
            "pair_acc",
        }
        assert line["lr"] == learning_rate(recipe.optim, line["step"] - 1, 2, 2)  # last step's
        assert line["epoch_seconds"] > 0 and line["images_per_second"] > 0
        assert math.isfinite(line["loss"]) and 0 <= line["pair_acc"] <= 1
    assert result.epochs_done == 2 and result.last_loss == lines[-1]["loss"]
    assert (folder / RECIPE_NAME).read_text() == recipe.to_yaml()
    assert sorted(os.listdir(folder)) == sorted(
        [CHECKPOINT_NAME, TRAIN_STATE_NAME, METRICS_NAME, RECIPE_NAME, LOCK_NAME]
    )  # no temporary files left
    # A 1-epoch run's epoch is the same (the recipe's first epoch is all warm-up).
    assert without_timing(records(one_epoch)[0]) == without_timing(lines[0])


def test_one_epoch_resumed_to_two_equals_two_epochs(one_epoch: Path, two_epochs, tmp_path) -> None:
    straight, _ = two_epochs
    resumed = tmp_path / "resumed"
    shutil.copytree(one_epoch, resumed)
    result = pretrain(tiny_recipe(2), resumed, CPU, resume=True, quiet=True)
    assert result.epochs_done == 2
    a, b = weights(straight), weights(resumed)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
    # Every record matches too: the first epoch is all warm-up, the same for 1 or 2 epochs.
    assert [without_timing(r) for r in records(resumed)] == [
        without_timing(r) for r in records(straight)
    ]
    state = read_safetensors(resumed / TRAIN_STATE_NAME, TRAIN_STATE_FORMAT)[1]
    assert (state["epoch"], state["step"]) == ("2", "4")


def test_nan_loss_stops_and_keeps_the_last_checkpoint(one_epoch: Path, tmp_path, monkeypatch):
    real_build = hssl_cli.objectives.build_objective

    def build_diverging(config, backbone):
        objective = real_build(config, backbone)
        forward, calls = objective.forward, []

        def diverging(*args, **kwargs):
            values = forward(*args, **kwargs)
            calls.append(1)
            if len(calls) > 2:  # from the first step of epoch 2
                values["loss"] = values["loss"] * float("nan")
            return values

        objective.forward = diverging
        return objective

    monkeypatch.setattr(hssl_cli.objectives, "build_objective", build_diverging)
    folder = tmp_path / "diverged"
    with pytest.raises(TrainingDiverged) as info:
        pretrain(tiny_recipe(2), folder, CPU, quiet=True)
    message = str(info.value)
    assert "loss became nan at epoch 2, step 1" in message
    assert f"the last good checkpoint (1 epochs) is intact in {folder}" in message
    assert read_checkpoint(folder / CHECKPOINT_NAME).epoch == 1
    a, b = weights(one_epoch), weights(folder)
    assert all(torch.equal(a[key], b[key]) for key in a)  # epoch 1 as a 1-epoch run left it
    assert [r["epoch"] for r in records(folder)] == [1]
    assert sorted(os.listdir(folder)) == sorted(
        [CHECKPOINT_NAME, TRAIN_STATE_NAME, METRICS_NAME, RECIPE_NAME, LOCK_NAME]
    )
