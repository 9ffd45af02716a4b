"""Every registered objective trains one step on every backbone it supports."""

import pytest
import torch

from hssl_cli.models import BACKBONES
from hssl_cli.objectives import OBJECTIVES
from hssl_cli.recipe import validate_recipe
from hssl_cli.training import make_optimizer

SMALL = {"projector_hidden_dim": 16, "projector_out_dim": 8}
BACKBONE_GROUPS = {"cnn": ["rot4", "trivial"], "resnet18": ["trivial"]}
AUGMENT = {"augment": {"crop_scale": [0.5, 1.0], "hflip": 0.5}}


def cases():
    for objective in sorted(OBJECTIVES):
        for backbone in sorted(BACKBONES):
            for group in BACKBONE_GROUPS[backbone]:
                yield objective, backbone, group


@pytest.mark.parametrize(("objective", "backbone", "group"), list(cases()))
def test_one_step_gives_finite_loss_and_gradients(
    objective: str, backbone: str, group: str
) -> None:
    from hssl_cli.models import build_backbone
    from hssl_cli.objectives import build_objective

    method = {"name": objective, **SMALL, **(AUGMENT if group == "trivial" else {})}
    recipe = validate_recipe(
        {"model": {"backbone": backbone, "group": group, "widths": [2, 4]}, "method": method}
    )
    torch.manual_seed(0)
    model = build_backbone(recipe.model, 3)
    loss_fn = build_objective(recipe.method, model)
    params = [*model.parameters(), *loss_fn.parameters()]
    optimizer = make_optimizer(recipe.optim, params)
    before = [p.detach().clone() for p in model.parameters()]
    values = loss_fn(model, torch.rand(4, 3, 16, 16))
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    optimizer.step()
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
