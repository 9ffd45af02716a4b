"""Backbone contract and the equivariance the methods rely on (docs/methods.md, Groups)."""

import pytest
import torch
from pydantic import ValidationError
from torch import nn

from hssl_cli.config import ModelConfig
from hssl_cli.equivariance import EXACT_THRESHOLD
from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.models import BACKBONES, build_backbone

TINY = {"widths": [4, 8], "width_multiplier": 1 / 16}  # small for every backbone's width rule


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


SCALE_BACKBONES = {"sesn_cnn", "sesn_resnet18"}  # scale groups only (escnn has none)


def control_group(backbone: str) -> str:
    return "scale4" if backbone in SCALE_BACKBONES else "rot4"


def config_or_reason(backbone: str, group: str, structure: str) -> ModelConfig | str:
    """The tiny model config, or why recipe validation (the backbone's own check) rejects it."""
    try:
        return ModelConfig(backbone=backbone, group=group, structure=structure, **TINY)
    except ValidationError as err:
        return "; ".join(error["msg"] for error in err.errors())


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(4, 1, 16, 16)


@pytest.mark.parametrize("group_name", ["flip", "rot4", "rot4flip"])
@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_every_equivariant_backbone_is_exact_on_its_group(backbone: str, group_name: str) -> None:
    """``f(T_g x) = rho(g) f(x)`` on the map and fibers, invariant features unchanged, for
    every element; a backbone that refuses the group at recipe validation is skipped."""
    config = config_or_reason(backbone, group_name, "equivariant")
    if isinstance(config, str):
        pytest.skip(config)  # "Value error, backbone resnet18 is not equivariant to rot4; ..."
    group = get_group(group_name)
    torch.manual_seed(0)
    model = build_backbone(config, 1).eval()
    # 32x32: every 2x2 pooling of e2resnet18 (and of the cnn) sees an even grid.
    images = torch.rand(2, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        reference = model(images)
        for element in range(group.order):
            moved = model(group.act_on_images(images, element))
            expected_map = group.act_on_fibers(reference.feature_map, element)
            expected_map = group.act_on_images(expected_map.flatten(1, 2), element)
            expected_fibers = group.act_on_fibers(reference.fibers, element)
            errors = {
                "map": relative_error(moved.feature_map.flatten(1, 2), expected_map),
                "fibers": relative_error(moved.fibers, expected_fibers),
                "invariant": relative_error(moved.invariant, reference.invariant),
            }
            assert max(errors.values()) < EXACT_THRESHOLD, (group.elements[element], errors)
    # The check is not vacuous: the fibers do move under the group.
    moved = model(group.act_on_images(images, group.order - 1)).fibers
    assert relative_error(moved, reference.fibers) > 1e-3


@pytest.mark.parametrize("backbone", sorted(BACKBONES))
def test_unstructured_control_is_not_equivariant(backbone: str, images: torch.Tensor) -> None:
    group = get_group(control_group(backbone))
    config = config_or_reason(backbone, group.name, "unstructured")
    assert isinstance(config, ModelConfig), config  # every backbone offers the control
    torch.manual_seed(0)
    model = build_backbone(config, 1).eval()
    with torch.no_grad():
        reference = model(images)
        errors = [
            relative_error(
                model(group.act_on_images(images, element)).fibers,
                group.act_on_fibers(reference.fibers, element),
            )
            for element in range(1, group.order)
        ]
    assert min(errors) > 0.1


def test_twin_has_the_same_activation_shapes(images: torch.Tensor) -> None:
    shapes = []
    for structure in ("equivariant", "unstructured"):
        config = ModelConfig(group="rot4", widths=[2, 3], structure=structure)
        output = build_backbone(config, 1)(images)
        shapes.append((output.feature_map.shape, output.fibers.shape, output.invariant.shape))
    assert shapes[0] == shapes[1]
    assert shapes[0][0] == (4, 3, 4, 8, 8)


def test_rot8_is_only_approximately_equivariant_at_45_degrees(images: torch.Tensor) -> None:
    group = get_group("rot8")
    model = build_backbone(ModelConfig(group="rot8", widths=[2]), 1).eval()
    with torch.no_grad():
        reference = model(images)
        exact = model(group.act_on_images(images, 2))  # 90 degrees
        approximate = model(group.act_on_images(images, 1))  # 45 degrees
    assert relative_error(exact.fibers, group.act_on_fibers(reference.fibers, 2)) < 1e-5
    assert relative_error(approximate.fibers, group.act_on_fibers(reference.fibers, 1)) > 1e-3


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_forwards_and_backpropagates(name: str) -> None:
    group = control_group(name)
    config = config_or_reason(name, group, "equivariant")
    if isinstance(config, str):
        config = ModelConfig(backbone=name, group=group, structure="unstructured", **TINY)
    model = build_backbone(config, 3)
    output = model(torch.rand(2, 3, 16, 16))
    assert output.fibers.shape[:2] == output.invariant.shape
    assert output.fibers.shape[2] == 4
    (output.invariant.sum() + output.fibers.square().sum()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)


# ---------------------------------------------------------------- resnet18


def torchvision_cifar_resnet18() -> nn.Sequential:
    """solo-learn's recipe: torchvision's resnet18 with a 3x3 stride-1 stem, no max-pool."""
    from torchvision.models import resnet18

    net = resnet18(weights=None)
    net.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    return nn.Sequential(
        net.conv1, net.bn1, net.relu, net.layer1, net.layer2, net.layer3, net.layer4
    )


def test_resnet18_at_full_width_is_torchvisions_cifar_resnet18() -> None:
    model = build_backbone(ModelConfig(backbone="resnet18", group="trivial"), 3)
    reference = torchvision_cifar_resnet18()
    ours = {k.removeprefix("body."): v.shape for k, v in model.state_dict().items()}
    assert ours.pop("input_mean") == ours.pop("input_std") == (3,)
    assert ours == {k: v.shape for k, v in reference.state_dict().items()}
    assert sum(p.numel() for p in model.parameters()) == 11_168_832
    model.body.load_state_dict(reference.state_dict())
    images = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    model.eval(), reference.eval()
    with torch.no_grad():
        torch.testing.assert_close(model.flat_feature_map(images), reference(images))


def test_resnet18_width_multiplier_scales_every_stage() -> None:
    config = ModelConfig(backbone="resnet18", group="rot4", structure="unstructured")
    model = build_backbone(config.model_copy(update={"width_multiplier": 0.25}), 3)
    with torch.no_grad():
        stages = model.stage_outputs(torch.rand(2, 3, 32, 32))
        output = model(torch.rand(2, 3, 32, 32))
    assert [name for name, _ in stages] == ["stem", "layer1", "layer2", "layer3", "layer4"]
    assert [tuple(out.shape[1:]) for _, out in stages] == [
        (16, 32, 32),  # stride-1 stem, no max-pool
        (16, 32, 32),
        (32, 16, 16),
        (64, 8, 8),
        (128, 4, 4),
    ]
    assert output.feature_map.shape == (2, 32, 4, 4, 4)  # 128 channels as 32 fake C4 fibers
    tiny = build_backbone(
        ModelConfig(backbone="resnet18", group="trivial", width_multiplier=1e-3), 3
    ).eval()
    assert [out.shape[1] for _, out in tiny.stage_outputs(torch.rand(1, 3, 8, 8))] == [1] * 5


def test_resnet18_rejects_groups_it_cannot_model() -> None:
    with pytest.raises(ValueError, match="resnet18 is not equivariant to rot4"):
        ModelConfig(backbone="resnet18", group="rot4")
    with pytest.raises(ValueError, match=r"512 output channels do not split into \|G\|=3"):
        ModelConfig(backbone="resnet18", group="rot3", structure="unstructured")
    with pytest.raises(ValueError, match=r"20 output channels do not split into \|G\|=8"):
        ModelConfig(
            backbone="resnet18", group="rot8", structure="unstructured", width_multiplier=20 / 512
        )
    from hssl_cli.models.resnet import CifarResNet18

    with pytest.raises(HsslUserError, match=r"do not split into \|G\|=3 fibers"):
        CifarResNet18(get_group("rot3"), 3, "max")


def test_normalization_lives_in_the_model() -> None:
    model = build_backbone(ModelConfig(group="trivial", widths=[2]), 1)
    model.set_normalization([0.5], [0.25])
    assert torch.allclose(model.normalize(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))
    assert "input_mean" in model.state_dict()
