"""Every registered objective trains one step on every backbone it supports.

"Supports" means the recipe validates: an objective rejects backbones it cannot use
in its config's ``check`` (with a message), and each objective must support at least one.
"""

import pytest
import torch

from hssl_cli.config import METHOD_CONFIGS
from hssl_cli.errors import HsslUserError
from hssl_cli.models import BACKBONES
from hssl_cli.objectives import OBJECTIVES, objective_class
from hssl_cli.recipe import validate_recipe
from hssl_cli.training import make_optimizer

GROUPS = ["rot4", "trivial", "scale3"]
AUGMENT = {"crop_scale": [0.5, 1.0], "hflip": 0.5}


def method_for(objective: str, group: str) -> dict:
    """Defaults, plus base augmentations where the trivial group leaves no fiber views."""
    fields = METHOD_CONFIGS[objective].model_fields
    method = {"name": objective}
    if group == "trivial" and "augment" in fields:
        method["augment"] = AUGMENT
    return method


def recipe_or_none(objective: str, backbone: str, group: str):
    model = {"backbone": backbone, "group": group, "widths": [2, 4]}
    if "width_multiplier" in MODEL_FIELDS:  # tiny versions of the ResNet-sized backbones
        model["width_multiplier"] = 0.0625
    for structure in ("equivariant", "unstructured"):
        try:
            return validate_recipe(
                {"model": {**model, "structure": structure}, "method": method_for(objective, group)}
            )
        except HsslUserError:
            continue
    return None


MODEL_FIELDS = set(type(validate_recipe({}).model).model_fields)
CASES = [(o, b, g) for o in sorted(OBJECTIVES) for b in sorted(BACKBONES) for g in GROUPS]


@pytest.mark.parametrize("objective", sorted(OBJECTIVES))
def test_every_objective_supports_some_backbone(objective: str) -> None:
    assert any(recipe_or_none(objective, b, g) for b in BACKBONES for g in GROUPS)


@pytest.mark.parametrize(("objective", "backbone", "group"), CASES)
def test_one_step_gives_finite_loss_and_gradients(
    objective: str, backbone: str, group: str
) -> None:
    from hssl_cli.models import build_backbone
    from hssl_cli.objectives import build_objective

    recipe = recipe_or_none(objective, backbone, group)
    if recipe is None:
        pytest.skip(f"{objective} does not support {backbone} with group {group}")
    torch.manual_seed(0)
    model = build_backbone(recipe.model, 3)
    loss_fn = build_objective(recipe.method, model)
    params = [p for p in [*model.parameters(), *loss_fn.parameters()] if p.requires_grad]
    optimizer = make_optimizer(recipe.optim, params)
    before = [p.detach().clone() for p in model.parameters()]
    images, labels = torch.rand(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    values = loss_fn(model, images, labels)
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    optimizer.step()
    loss_fn.after_step(model, 1, 10)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_every_objective_has_its_config_and_every_config_its_objective() -> None:
    assert set(OBJECTIVES) == set(METHOD_CONFIGS)
    for name, config in METHOD_CONFIGS.items():
        assert objective_class(name).Config is config
        assert config.model_fields["name"].default == name
