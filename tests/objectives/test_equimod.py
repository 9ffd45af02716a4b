"""EquiMod (Devillers & Lefort 2023): its losses, eqgain, the reduction to SimCLR/BYOL,
and training steps."""

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hssl_cli.config import ByolConfig, ModelConfig, SimclrConfig
from hssl_cli.errors import HsslUserError
from hssl_cli.losses import nt_xent
from hssl_cli.models import build_backbone
from hssl_cli.models.backbone import Backbone
from hssl_cli.objectives import build_objective
from hssl_cli.objectives.equimod import (
    EquimodConfig,
    EquimodObjective,
    equivariance_gain,
    equivariant_nt_xent,
)
from hssl_cli.recipe import load_recipe, validate_recipe
from hssl_cli.training import make_optimizer

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
BASE_AUGMENT = {"crop_scale": (0.5, 1.0), "hflip": 0.5}
AUGMENT = {**BASE_AUGMENT, "jitter_order": "random"}
SMALL = {
    "projector_hidden_dim": 16,
    "projector_out_dim": 8,
    "equivariant_hidden_dim": 16,
    "equivariant_dim": 8,
    "predictor_hidden_dim": 16,
    "augment": AUGMENT,
}


def make(group: str = "rot4", channels: int = 3, **changes: object):
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(group=group, widths=[2, 4]), channels)
    objective = build_objective(EquimodConfig(**{**SMALL, **changes}), backbone)
    return backbone, objective


def views_of(objective: EquimodObjective, images: torch.Tensor):
    torch.manual_seed(1)
    views, parameters = zip(*(a(images) for a in objective.augmentations), strict=True)
    return views, parameters


def test_equivariant_nt_xent_matches_a_reference_loop() -> None:
    torch.manual_seed(2)
    targets, predictions, temperature = torch.randn(6, 5), torch.randn(6, 5), 0.2
    rows = F.normalize(torch.cat([targets, predictions]), dim=1)
    terms = []
    for anchor in range(12):
        positive = (anchor + 6) % 12  # y_t^i <-> y_hat_t^i, nothing else
        logits = {j: rows[anchor] @ rows[j] / temperature for j in range(12) if j != anchor}
        denominator = torch.logsumexp(torch.stack(list(logits.values())), 0)
        terms.append(denominator - logits[positive])
    expected = torch.stack(terms).mean()
    torch.testing.assert_close(equivariant_nt_xent(targets, predictions, temperature), expected)


def test_equivariance_gain_on_hand_made_vectors() -> None:
    targets = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    predictions = torch.tensor([[3.0, 0.0], [0.0, 1.0]])  # cos 1 with their targets
    originals = torch.tensor([[0.0, 1.0], [1.0, 1.0]])  # cos 0 and 1/sqrt(2)
    expected = 1 - (0 + 2**-0.5) / 2
    torch.testing.assert_close(
        equivariance_gain(targets, predictions, originals), torch.tensor(expected)
    )


def embed(simclr, backbone, views) -> torch.Tensor:
    """SimCLR's projected views ``[2B, D]`` of two already augmented batches."""
    return simclr.head(torch.cat([simclr.read(backbone(view)) for view in views]))


@pytest.mark.parametrize("group", ["rot4", "trivial"])
def test_lambda_zero_is_simclr_exactly(group: str) -> None:
    backbone, equimod = make(group, equivariant_weight=0.0)
    simclr = build_objective(
        SimclrConfig(projector_hidden_dim=16, projector_out_dim=8, augment=BASE_AUGMENT), backbone
    )
    simclr.head.load_state_dict(equimod.base.head.state_dict())
    images = torch.rand(6, 3, 16, 16)
    views, parameters = views_of(equimod, images)
    calls = []
    hook = backbone.register_forward_hook(lambda module, args, out: calls.append(1))
    values = equimod.losses(backbone, images, views, parameters)
    hook.remove()
    expected = nt_xent(embed(simclr, backbone, views), torch.arange(6).repeat(2), 0.5)
    assert torch.equal(values["loss"], expected)
    assert len(calls) == 2  # no forward of the original: batch-norm statistics stay SimCLR's
    assert "eqgain" not in values


def test_invariant_term_is_simclr_with_the_module_on() -> None:
    backbone, equimod = make("rot4", equivariant_weight=1.0)
    simclr = build_objective(
        SimclrConfig(projector_hidden_dim=16, projector_out_dim=8, augment=BASE_AUGMENT), backbone
    )
    simclr.head.load_state_dict(equimod.base.head.state_dict())
    images = torch.rand(6, 3, 16, 16)
    views, parameters = views_of(equimod, images)
    values = equimod.losses(backbone, images, views, parameters)
    expected = nt_xent(embed(simclr, backbone, views), torch.arange(6).repeat(2), 0.5)
    assert torch.equal(values["loss_invariant"], expected)
    torch.testing.assert_close(
        values["loss"], values["loss_invariant"] + values["loss_equivariant"]
    )


def test_lambda_zero_is_byol_exactly() -> None:
    backbone, equimod = make("rot4", base="byol", equivariant_weight=0.0)
    byol = build_objective(
        ByolConfig(
            projector_hidden_dim=16,
            projector_out_dim=8,
            predictor_hidden_dim=16,
            augment=BASE_AUGMENT,
        ),
        backbone,
    )
    byol.projector.load_state_dict(equimod.base.projector.state_dict())
    byol.predictor.load_state_dict(equimod.base.predictor.state_dict())
    byol.target.load_state_dict(equimod.base.target.state_dict())
    images = torch.rand(6, 3, 16, 16)
    views, parameters = views_of(equimod, images)
    given = iter(views)
    byol.augment = lambda batch: next(given)  # ByolObjective sees exactly these two views
    values = equimod.losses(backbone, images, views, parameters)
    assert torch.equal(values["loss"], byol(backbone, images)["loss"])


def test_eqgain_is_computed_as_defined() -> None:
    backbone, equimod = make("rot4")
    images = torch.rand(6, 3, 16, 16)
    views, parameters = views_of(equimod, images)
    values = equimod.losses(backbone, images, views, parameters)
    # By hand: y = g_eq(f(x)) for x0, x1, x2 in one batch; y_hat_t = u([y0; g_t(p_t)]).
    with torch.no_grad():
        features = [equimod.base.read(backbone(x)) for x in (images, *views)]
        y0, y1, y2 = equimod.equivariant_projector(torch.cat(features)).split(6)
        encoded = equimod.parameter_encoder(equimod.standardise(torch.cat(parameters)))
        y_hat = equimod.equivariant_predictor(torch.cat([torch.cat([y0, y0]), encoded], 1))
        y_hat, ys = y_hat.split(6), [y1, y2]
    predicted = torch.stack([F.cosine_similarity(ys[t], y_hat[t]) for t in range(2)]).mean()
    unmoved = torch.stack([F.cosine_similarity(ys[t], y0) for t in range(2)]).mean()
    torch.testing.assert_close(values["eqgain"], predicted - unmoved)


def test_parameters_reach_the_predictor() -> None:
    """Different augmentation parameters for the same images change the predictions."""
    backbone, equimod = make("trivial")
    equimod.eval()
    backbone.eval()
    images = torch.rand(6, 3, 16, 16)
    views, parameters = views_of(equimod, images)
    values = equimod.losses(backbone, images, views, parameters)
    swapped = (parameters[1], parameters[0])
    other = equimod.losses(backbone, images, views, swapped)
    assert not torch.allclose(values["loss_equivariant"], other["loss_equivariant"])
    assert torch.equal(values["loss_invariant"], other["loss_invariant"])


def trainable(backbone: Backbone, objective: EquimodObjective) -> list[torch.nn.Parameter]:
    return [p for p in [*backbone.parameters(), *objective.parameters()] if p.requires_grad]


@pytest.mark.parametrize(("group", "base"), [("rot4", "simclr"), ("trivial", "simclr")])
def test_one_step_trains_every_head(group: str, base: str) -> None:
    backbone, equimod = make(group, base=base)
    optimizer = make_optimizer(validate_recipe({}).optim, trainable(backbone, equimod))
    values = equimod(backbone, torch.rand(8, 3, 16, 16))
    assert set(values) == {"loss", "loss_invariant", "loss_equivariant", "eqgain", "pair_acc"}
    assert all(torch.isfinite(v) for v in values.values())
    values["loss"].backward()
    for name, parameter in [*backbone.named_parameters(), *equimod.named_parameters()]:
        if parameter.requires_grad:
            assert parameter.grad is not None, name
            assert torch.isfinite(parameter.grad).all(), name
    optimizer.step()


def test_byol_step_moves_the_target() -> None:
    backbone, equimod = make("rot4", channels=1, base="byol")
    params = trainable(backbone, equimod)
    assert not any(p is q for p in params for q in equimod.base.target.parameters())
    optimizer = torch.optim.SGD(params, lr=0.5)
    before = [p.clone() for p in equimod.base.target.parameters()]
    values = equimod(backbone, torch.rand(8, 1, 16, 16))
    assert set(values) == {"loss", "loss_invariant", "loss_equivariant", "eqgain", "target_std"}
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    optimizer.step()
    equimod.after_step(backbone, 1, 10)
    after = list(equimod.base.target.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_byol_layout_covers_both_pipelines() -> None:
    byol_views = {
        "augment": {**AUGMENT, "blur": 1.0},
        "second_augment": {**AUGMENT, "blur": 0.1, "solarize": 0.2},
    }
    _, equimod = make("trivial", base="byol", **byol_views)
    assert equimod.augmentations[0].layout == equimod.augmentations[1].layout
    assert len(equimod.augmentations[0].layout) == 18
    assert equimod.parameter_encoder[0].in_features == 18


@pytest.mark.parametrize("key", ["augment", "second_augment"])
def test_group_element_is_a_recipe_error(key: str) -> None:
    method = {"name": "equimod", key: {"group_element": True}}
    with pytest.raises(HsslUserError, match=f"method.{key}.group_element"):
        validate_recipe({"method": method})


@pytest.mark.parametrize(
    "name",
    [
        "fashion_equimod_simclr.yaml",
        "fashion_equimod_byol.yaml",
        "cifar_equimod_simclr.yaml",
        "cifar_equimod_byol.yaml",
    ],
)
def test_recipes_load(name: str) -> None:
    recipe = load_recipe(RECIPES / name)
    assert recipe.method.name == "equimod"
    assert recipe.method.base == name.split("_")[-1].removesuffix(".yaml")
