"""Equivariant pretext labels (Mukuta & Harada 2023): logits move with the input, invariant
ones cannot."""

import pytest
import torch

from hssl_cli.config import EqlabelsConfig, ModelConfig
from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.objectives.eqlabels import EqlabelsObjective
from hssl_cli.recipe import validate_recipe
from hssl_cli.training import make_optimizer


def make(group: str, head: str = "equivariant", structure: str = "equivariant", hidden=None):
    torch.manual_seed(0)
    model = build_backbone(ModelConfig(group=group, widths=[2, 4], structure=structure), 1)
    objective = build_objective(EqlabelsConfig(head=head, head_hidden_dim=hidden), model)
    return model.eval(), objective.eval()


def logits_of_all_transforms(group_name: str, head: str, **options) -> tuple:
    model, objective = make(group_name, head, **options)
    group = get_group(group_name)
    images = torch.rand(3, 1, 16, 16)
    with torch.no_grad():
        logits = [
            objective.logits(model(group.act_on_images(images, g))) for g in range(group.order)
        ]
    return group, logits


@pytest.mark.parametrize("hidden", [None, 8])
def test_c4_logits_shift_cyclically_with_input_rotation(hidden: int | None) -> None:
    _, logits = logits_of_all_transforms("rot4", "equivariant", hidden=hidden)
    for k in range(4):
        assert torch.allclose(logits[k], torch.roll(logits[0], k, dims=1), atol=1e-5)
    assert not torch.allclose(logits[1], logits[0], atol=1e-3)


def test_d4_logits_permute_as_the_regular_representation() -> None:
    group, logits = logits_of_all_transforms("rot4flip", "equivariant")
    for g in range(group.order):
        assert torch.allclose(logits[g], group.act_on_fibers(logits[0], g, axis=1), atol=1e-5)


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
def test_an_upright_prediction_becomes_the_applied_element(group_name: str) -> None:
    """If ``x`` is classified "identity", ``T_g x`` is classified ``g``: labels are the elements."""
    group = get_group(group_name)
    for g in range(group.order):
        identity_logits = torch.zeros(1, group.order).index_fill_(1, torch.tensor([0]), 1.0)
        assert group.act_on_fibers(identity_logits, g, axis=1).argmax().item() == g


def test_invariant_head_cannot_beat_chance() -> None:
    group, logits = logits_of_all_transforms("rot4", "invariant")
    for k in range(1, 4):
        assert torch.allclose(logits[k], logits[0], atol=1e-5)
    # Each image's orbit gets one prediction for all four labels: exactly 1/|G| correct.
    predictions = torch.stack([entry.argmax(1) for entry in logits])  # [|G|, B]
    labels = torch.arange(group.order)[:, None].expand_as(predictions)
    assert (predictions == labels).float().mean().item() == pytest.approx(1 / group.order)


def test_unstructured_twin_does_not_shift() -> None:
    _, logits = logits_of_all_transforms("rot4", "equivariant", structure="unstructured")
    assert not torch.allclose(logits[1], torch.roll(logits[0], 1, dims=1), atol=1e-3)


@pytest.mark.parametrize(
    ("structure", "head"),
    [("equivariant", "equivariant"), ("equivariant", "invariant"), ("unstructured", "equivariant")],
)
def test_one_training_step(structure: str, head: str) -> None:
    recipe = validate_recipe(
        {
            "model": {"group": "rot4", "widths": [2, 4], "structure": structure},
            "method": {"name": "eqlabels", "head": head, "augment": {"crop_scale": [0.5, 1.0]}},
        }
    )
    torch.manual_seed(0)
    model = build_backbone(recipe.model, 3)
    objective = build_objective(recipe.method, model)
    assert isinstance(objective, EqlabelsObjective)
    optimizer = make_optimizer(recipe.optim, [*model.parameters(), *objective.parameters()])
    before = [p.detach().clone() for p in model.parameters()]
    values = objective(model, torch.rand(4, 3, 16, 16))
    values["loss"].backward()
    optimizer.step()
    assert torch.isfinite(values["loss"]) and set(values) == {"loss", "pretext_acc"}
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


@pytest.mark.parametrize(
    ("group", "method", "message"),
    [
        ("trivial", {}, "only one"),
        ("rot4", {"augment": {"group_element": True}}, "group_element"),
        ("rot4flip", {"augment": {"hflip": 0.5}}, "hflip=0"),
    ],
)
def test_recipe_mistakes_are_named(group: str, method: dict, message: str) -> None:
    with pytest.raises(HsslUserError, match=message):
        validate_recipe({"model": {"group": group}, "method": {"name": "eqlabels", **method}})
