"""Backbone contract and the equivariance the methods rely on (METHODS §0)."""

import pytest
import torch

from hssl_cli.groups import get_group
from hssl_cli.models import BACKBONES, build_backbone
from hssl_cli.recipe import ModelConfig


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(4, 1, 16, 16)


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_escnn_cnn_is_exactly_equivariant(group_name: str, mode: str, images: torch.Tensor) -> None:
    group = get_group(group_name)
    model = build_backbone(ModelConfig(group=group_name, widths=[2, 3], convs_per_stage=2), 1)
    model.train(mode == "train")
    with torch.no_grad():
        reference = model(images)
        for element in range(group.order):
            moved = model(group.act_on_images(images, element))
            expected_map = group.act_on_fibers(reference.feature_map, element)
            expected_map = group.act_on_images(expected_map.flatten(1, 2), element).view_as(
                expected_map
            )
            assert relative_error(moved.feature_map, expected_map) < 1e-5
            assert (
                relative_error(moved.fibers, group.act_on_fibers(reference.fibers, element)) < 1e-5
            )
            assert relative_error(moved.invariant, reference.invariant) < 1e-5


def test_unstructured_twin_is_not_equivariant(images: torch.Tensor) -> None:
    group = get_group("rot4")
    model = build_backbone(ModelConfig(group="rot4", widths=[2, 3], structure="unstructured"), 1)
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
    group = "trivial" if name == "resnet18" else "rot4"
    config = ModelConfig(backbone=name, group=group, widths=[2, 3], width_multiplier=0.0625)
    model = build_backbone(config, 3)
    output = model(torch.rand(2, 3, 16, 16))
    assert output.fibers.shape[:2] == output.invariant.shape
    output.invariant.sum().backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_resnet18_has_the_cifar_stem_and_a_fake_group_axis() -> None:
    model = build_backbone(
        ModelConfig(backbone="resnet18", group="rot4", structure="unstructured"), 3
    )
    output = model(torch.rand(2, 3, 32, 32))
    assert output.feature_map.shape == (2, 128, 4, 4, 4)  # stride-1 stem: 32 / 8
    with pytest.raises(ValueError, match="not equivariant"):  # rejected by recipe validation
        ModelConfig(backbone="resnet18", group="rot4")


def test_normalization_lives_in_the_model() -> None:
    model = build_backbone(ModelConfig(group="trivial", widths=[2]), 1)
    model.set_normalization([0.5], [0.25])
    assert torch.allclose(model.normalize(torch.full((1, 1, 2, 2), 0.75)), torch.ones(1, 1, 2, 2))
    assert "input_mean" in model.state_dict()
