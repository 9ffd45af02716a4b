"""BYOL: its loss, the moving-average target, its schedule and its life in checkpoints."""

import copy
import math
from pathlib import Path

import pytest
import torch

from hssl_cli.checkpoint import (
    BACKBONE_PREFIX,
    OBJECTIVE_PREFIX,
    load_weights,
    read_checkpoint,
    save_checkpoint,
)
from hssl_cli.models import build_backbone
from hssl_cli.models.backbone import Backbone
from hssl_cli.objectives import build_objective
from hssl_cli.objectives.byol import ByolObjective
from hssl_cli.objectives.ema import EmaTarget, cosine_momentum
from hssl_cli.recipe import validate_recipe
from hssl_cli.training import make_optimizer, pretrain
from hssl_cli.training import state as training_state

TINY = {
    "data": {"name": "digits", "limit_train": 64, "image_size": 16},
    "model": {"group": "rot4", "widths": [2, 4]},
    "method": {
        "name": "byol",
        "projector_hidden_dim": 16,
        "projector_out_dim": 8,
        "predictor_hidden_dim": 16,
        "augment": {"crop_scale": [0.6, 1.0], "hflip": 0.0},
    },
    "optim": {"name": "sgd", "lr": 0.1, "weight_decay": 0.01},
    "train": {"epochs": 2, "batch_size": 32},
}


def make(group: str = "rot4") -> tuple[Backbone, ByolObjective]:
    recipe = validate_recipe({**TINY, "model": {**TINY["model"], "group": group}})
    torch.manual_seed(0)
    backbone = build_backbone(recipe.model, 1)
    return backbone, build_objective(recipe.method, backbone)


def trainable(backbone: Backbone, objective: ByolObjective) -> list[torch.nn.Parameter]:
    """What the trainer hands its optimiser."""
    return [p for p in [*backbone.parameters(), *objective.parameters()] if p.requires_grad]


def train_step(backbone: Backbone, objective: ByolObjective, optimizer) -> None:
    loss = objective(backbone, torch.rand(8, 1, 16, 16))["loss"]
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


@pytest.mark.parametrize("base", [0.99, 0.996, 0.0])
def test_momentum_schedule_endpoints(base: float) -> None:
    assert cosine_momentum(base, 0, 100) == pytest.approx(base)
    assert cosine_momentum(base, 50, 100) == pytest.approx(1 - (1 - base) / 2)
    assert cosine_momentum(base, 100, 100) == pytest.approx(1.0)
    assert cosine_momentum(base, 25, 100) < cosine_momentum(base, 75, 100)


def test_target_is_rebuilt_not_deep_copied_and_starts_equal(monkeypatch) -> None:
    deepcopy = copy.deepcopy

    def refuse_backbones(value, *args):
        if isinstance(value, Backbone):
            raise AssertionError("the escnn backbone must not be deep-copied")
        return deepcopy(value, *args)

    monkeypatch.setattr(copy, "deepcopy", refuse_backbones)
    backbone, objective = make()
    target = objective.target
    assert isinstance(target.backbone, type(backbone)) and target.backbone is not backbone
    online_state, target_state = backbone.state_dict(), target.backbone.state_dict()
    assert online_state.keys() == target_state.keys()
    for name, value in online_state.items():
        assert torch.equal(value, target_state[name]), name
    for (name, online), target_parameter in zip(
        backbone.named_parameters(), target.backbone.parameters(), strict=True
    ):
        assert online.data_ptr() != target_parameter.data_ptr(), name  # own weights
    for name, value in objective.projector.state_dict().items():
        assert torch.equal(value, target.head.state_dict()[name]), name
    assert not any(p.requires_grad for p in target.parameters())


def test_optimiser_never_changes_the_target() -> None:
    backbone, objective = make()
    parameters = trainable(backbone, objective)
    target_ids = {id(p) for p in objective.target.parameters()}
    assert not target_ids & {id(p) for p in parameters}
    optimizer = make_optimizer(validate_recipe(TINY).optim, parameters)
    before = snapshot(objective.target)
    train_step(backbone, objective, optimizer)
    after = dict(objective.target.named_parameters())
    assert all(torch.equal(before[name], value) for name, value in after.items())
    online = backbone.named_parameters()
    assert any(not torch.equal(before["backbone." + name], p) for name, p in online)


def test_after_step_applies_the_moving_average_exactly() -> None:
    backbone, objective = make()
    optimizer = make_optimizer(validate_recipe(TINY).optim, trainable(backbone, objective))
    train_step(backbone, objective, optimizer)
    old_target = snapshot(objective.target)
    step, total = 3, 10
    objective.after_step(backbone, step, total)
    tau = 1 - (1 - 0.99) * (math.cos(math.pi * step / total) + 1) / 2
    pairs = [("backbone.", backbone), ("head.", objective.projector)]
    moved = 0
    for prefix, online in pairs:
        for name, parameter in online.named_parameters():
            new = objective.target.state_dict()[prefix + name]
            expected = tau * old_target[prefix + name] + (1 - tau) * parameter.detach()
            assert torch.allclose(new, expected, rtol=0, atol=1e-7), name
            moved += not torch.equal(new, old_target[prefix + name])
        for name, buffer in online.named_buffers():
            assert torch.equal(objective.target.state_dict()[prefix + name], buffer), name
    assert moved > 0


def test_target_stays_in_train_mode() -> None:
    _, objective = make()
    objective.eval()
    assert objective.target.training
    assert all(module.training for module in objective.target.modules())
    assert not objective.projector.training


def test_target_without_model_config_is_a_clear_error() -> None:
    backbone, objective = make()
    backbone.model_config = None
    with pytest.raises(ValueError, match="build_backbone"):
        EmaTarget(backbone, objective.projector)


@pytest.mark.parametrize("readout", ["fiber", "invariant"])
def test_forward_logs_loss_in_range_and_target_spread(readout: str) -> None:
    backbone, objective = make()
    objective.config.readout = readout
    values = objective(backbone, torch.rand(8, 1, 16, 16))
    assert set(values) == {"loss", "target_std"}
    assert 0 <= values["loss"].item() <= 8
    assert values["target_std"].item() > 0


def test_checkpoint_round_trip_restores_the_target(tmp_path: Path) -> None:
    backbone, objective = make()
    optimizer = make_optimizer(validate_recipe(TINY).optim, trainable(backbone, objective))
    for step in (1, 2):
        train_step(backbone, objective, optimizer)
        objective.after_step(backbone, step, 10)
    path = tmp_path / "checkpoint.safetensors"
    save_checkpoint(path, backbone, objective, validate_recipe(TINY), 1, {"input": [1, 16, 16]})

    checkpoint = read_checkpoint(path)
    torch.manual_seed(1)
    fresh_backbone = build_backbone(checkpoint.recipe.model, 1)
    fresh = build_objective(checkpoint.recipe.method, fresh_backbone)
    assert not torch.equal(
        next(fresh.target.parameters()), next(objective.target.parameters())
    )  # a different start, so the load below is what restores it
    load_weights(fresh_backbone, checkpoint.weights(BACKBONE_PREFIX), str(path))
    load_weights(fresh, checkpoint.weights(OBJECTIVE_PREFIX), str(path))
    restored, original = fresh.target.state_dict(), objective.target.state_dict()
    assert restored.keys() == original.keys()
    assert all(torch.equal(restored[name], original[name]) for name in original)


def test_resume_continues_the_run_exactly(tmp_path: Path, monkeypatch) -> None:
    recipe, cpu = validate_recipe(TINY), torch.device("cpu")
    pretrain(recipe, tmp_path / "straight", cpu, quiet=True)

    save_train_state = training_state.save_train_state

    def stop_after_first_epoch(path: Path, optimizer, epoch: int, step: int, **extra) -> None:
        save_train_state(path, optimizer, epoch, step, **extra)
        if epoch == 1:
            raise KeyboardInterrupt  # as Ctrl-C would, once epoch 1 is saved

    monkeypatch.setattr(training_state, "save_train_state", stop_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        pretrain(recipe, tmp_path / "resumed", cpu, quiet=True)
    monkeypatch.undo()
    pretrain(recipe, tmp_path / "resumed", cpu, resume=True, quiet=True)
    a = read_checkpoint(tmp_path / "straight" / "checkpoint.safetensors").tensors
    b = read_checkpoint(tmp_path / "resumed" / "checkpoint.safetensors").tensors
    assert any(key.startswith(OBJECTIVE_PREFIX + "target.") for key in a)
    assert a.keys() == b.keys()
    assert all(torch.equal(a[key], b[key]) for key in a)
