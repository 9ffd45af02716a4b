"""H-SSL and its A-SSL twin train on scale fibers, with and without base augmentations."""

import pytest
import torch

from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.objectives.scale_views import ScaleFiberViews
from hssl_cli.recipe import validate_recipe

MODEL = {"backbone": "sesn_cnn", "group": "scale3", "widths": [3, 4], "kernel_size": 5}
AUGMENT = {"crop_scale": [1.0, 1.0], "crop_ratio": [1.0, 1.0], "jitter_p": 0.8}
SMALL = {"projector_hidden_dim": 16, "projector_out_dim": 8}


@pytest.mark.parametrize(
    "method",
    [
        {"name": "hssl"},  # scale-only views: one forward
        {"name": "hssl", "augment": AUGMENT},
        {"name": "hssl", "fiber_bundle_size": 2, "all_fibers_positive": True},
        {"name": "hssl", "base_loss": "vicreg", "spread": 2},
        {"name": "simclr", "augment": {**AUGMENT, "group_element": True}},
    ],
)
def test_one_step_on_scale_fibers(method: dict) -> None:
    recipe = validate_recipe({"model": MODEL, "method": {**method, **SMALL}})
    torch.manual_seed(0)
    model = build_backbone(recipe.model, 1)
    objective = build_objective(recipe.method, model)
    assert isinstance(objective.views, ScaleFiberViews)
    values = objective(model, torch.rand(6, 1, 16, 16))
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)


def test_random_rescaling_is_the_a_ssl_twin_of_scale_fibers() -> None:
    """SimCLR's group element shrinks the input by ``q^k`` with ``k`` uniform on the group."""
    recipe = validate_recipe(
        {
            "model": MODEL,
            "method": {"name": "simclr", "augment": {**AUGMENT, "group_element": True}},
        }
    )
    model = build_backbone(recipe.model, 1)
    objective = build_objective(recipe.method, model)
    params = objective.augment.sample(3000, torch.device("cpu"), torch.Generator().manual_seed(0))
    counts = torch.bincount(params["group_element"], minlength=3)
    assert counts.min() > 900  # all three scales, about equally often
    image = torch.zeros(1, 1, 16, 16)
    image[..., 4:12, 4:12] = 1.0
    shrunk = objective.augment.apply(
        image,
        {
            **{k: v[:1] for k, v in params.items()},
            "group_element": torch.tensor([2]),
            "jitter_on": torch.zeros(1),
        },
    )
    assert shrunk.sum().item() == pytest.approx(image.sum().item() / 4, rel=0.1)
