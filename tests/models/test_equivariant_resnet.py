"""The escnn ResNet-18 (``e2resnet18``): exactness, widths, initialisation, checkpoints."""

import pytest
import torch

from hssl_cli.checkpoint import canonical_state, load_backbone, read_checkpoint, save_checkpoint
from hssl_cli.config import ModelConfig
from hssl_cli.groups import get_group
from hssl_cli.models import build_backbone
from hssl_cli.models.equivariant_resnet import (
    RESNET18_STAGE_CHANNELS,
    STAGE_NAMES,
    EscnnLayers,
    regular_fields_per_stage,
)
from hssl_cli.objectives import build_objective
from hssl_cli.recipe import validate_recipe
from hssl_cli.structured import read_output, split_fields

TINY = 0.0625  # width_multiplier: 2..20 fields per stage for C4


def relative_error(actual: torch.Tensor, expected: torch.Tensor) -> float:
    return ((actual - expected).norm() / expected.norm()).item()


def tiny_model(group: str, structure: str = "equivariant") -> torch.nn.Module:
    torch.manual_seed(0)
    config = ModelConfig(
        backbone="e2resnet18", group=group, structure=structure, width_multiplier=TINY
    )
    return build_backbone(config, 3)


@pytest.fixture(scope="module")
def models() -> dict[str, torch.nn.Module]:
    return {group: tiny_model(group) for group in ("rot4", "rot4flip")}


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))


def moved_map(group_name: str, feature_map: torch.Tensor, element: int) -> torch.Tensor:
    """``rho(g)`` on a flat ``[B, C*|G|, H, W]`` map: permute each fiber, move the grid."""
    group = get_group(group_name)
    fields = feature_map.unflatten(1, (-1, group.order))
    fields = group.act_on_fibers(fields, element)
    return group.act_on_images(fields.flatten(1, 2), element)


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_every_stage_is_exactly_equivariant_and_pooling_invariant(
    group_name: str, mode: str, models: dict, images: torch.Tensor
) -> None:
    group, model = get_group(group_name), models[group_name]
    model.train(mode == "train")
    with torch.no_grad():
        reference = model.stage_outputs(images)
        pooled = read_output(split_fields(reference[-1][1], group.order), model.group_pool)
        for element in range(1, group.order):
            moved = model.stage_outputs(group.act_on_images(images, element))
            for (name, got), (_, before) in zip(moved, reference, strict=True):
                error = relative_error(got, moved_map(group_name, before, element))
                assert error < 1e-5, f"{name}, element {element}: {error}"
            moved_pooled = read_output(split_fields(moved[-1][1], group.order), model.group_pool)
            expected_fibers = group.act_on_fibers(pooled.fibers, element)
            assert relative_error(moved_pooled.fibers, expected_fibers) < 1e-5
            assert relative_error(moved_pooled.invariant, pooled.invariant) < 1e-5
    model.train()


def test_stage_outputs_follow_the_cifar_resnet_layout(models: dict) -> None:
    model = models["rot4"]
    images = torch.rand(2, 3, 32, 32)
    fields = regular_fields_per_stage(get_group("rot4"), 3, "params", TINY)
    with torch.no_grad():
        stages = model.stage_outputs(images)
        flat = model.flat_feature_map(model.normalize(images))
    assert [name for name, _ in stages] == list(STAGE_NAMES)
    sizes = [32, 32, 16, 8, 4]  # stride-1 stem, no max-pool, then halve per stage
    widths = [fields[0], *fields]
    for (_, output), size, width in zip(stages, sizes, widths, strict=True):
        assert output.shape == (2, width * 4, size, size)
    torch.testing.assert_close(stages[-1][1], flat)
    with torch.no_grad():
        output = model(images)
    torch.testing.assert_close(output.feature_map, split_fields(flat, 4))
    assert model.num_fields == fields[-1]


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
def test_activation_widths_equal_resnet18_channels(group_name: str) -> None:
    group = get_group(group_name)
    fields = regular_fields_per_stage(group, 3, "activations", 1.0)
    assert [f * group.order for f in fields] == list(RESNET18_STAGE_CHANNELS)


def test_parameter_widths_use_the_escnn_basis_size() -> None:
    # escnn's 3x3 basis between two C4 regular fields has 24 elements, a plain 3x3 kernel 9
    # per channel pair: fields = channels * sqrt(9 / 24).
    rot4 = get_group("rot4")
    assert regular_fields_per_stage(rot4, 3, "params", 1.0) == [39, 78, 157, 314]
    assert regular_fields_per_stage(rot4, 3, "params", 0.5) == [20, 39, 78, 157]
    assert regular_fields_per_stage(rot4, 3, "params", 1e-3) == [1, 1, 1, 1]
    assert regular_fields_per_stage(get_group("trivial"), 3, "params", 1.0) == [64, 128, 256, 512]


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
def test_fast_he_initialisation_matches_escnn(group_name: str) -> None:
    from escnn.nn.init import _generalized_he_init_variances  # escnn's slow reference

    layers = EscnnLayers(get_group(group_name), initialize=True)
    for source, target, kernel_size in [
        (layers.image(3), layers.regular(5), 3),
        (layers.regular(3), layers.regular(4), 3),
        (layers.regular(4), layers.regular(2), 1),
    ]:
        conv = layers.conv(source, target, kernel_size)
        reference = _generalized_he_init_variances(conv.basisexpansion)  # a std, despite its name
        std = layers._single_pair_he_std(source, target, kernel_size)
        torch.testing.assert_close(
            std.repeat(len(source) * len(target)) / len(source) ** 0.5, reference
        )
        assert conv.weights.abs().sum() > 0
    untouched = EscnnLayers(get_group(group_name), initialize=False)
    assert untouched.conv(layers.regular(2), layers.regular(2), 3).weights.abs().sum() == 0


def test_unstructured_twin_has_the_same_shapes_but_no_equivariance(
    models: dict, images: torch.Tensor
) -> None:
    group, equivariant = get_group("rot4"), models["rot4"]
    twin = tiny_model("rot4", structure="unstructured")
    with torch.no_grad():
        shapes = [[out.shape for _, out in m.stage_outputs(images)] for m in (equivariant, twin)]
        reference = twin(images)
        errors = [
            relative_error(
                twin(group.act_on_images(images, element)).fibers,
                group.act_on_fibers(reference.fibers, element),
            )
            for element in range(1, group.order)
        ]
    assert shapes[0] == shapes[1]
    assert min(errors) > 0.1


def test_trivial_group_gives_a_plain_resnet18_topology() -> None:
    from escnn.nn import EquivariantModule

    model = tiny_model("trivial")
    assert not any(isinstance(module, EquivariantModule) for module in model.modules())
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 1 + 4 * 2 * 2 + 3  # stem, two 3x3 per block, three 1x1 shortcuts
    assert model(torch.rand(2, 3, 16, 16)).feature_map.shape == (2, 32, 1, 2, 2)


def test_forward_and_backward_reach_every_parameter(models: dict) -> None:
    model = models["rot4flip"]
    model.train()
    model.zero_grad()
    output = model(torch.rand(2, 3, 16, 16))
    (output.invariant.sum() + output.fibers.square().sum()).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    assert all(g.abs().sum() > 0 for g in grads)
    model.zero_grad()


def test_width_multiplier_must_be_positive() -> None:
    with pytest.raises(ValueError, match="width_multiplier"):
        ModelConfig(backbone="e2resnet18", width_multiplier=0)


def test_checkpoint_round_trip_reproduces_outputs_in_eval_mode(tmp_path) -> None:
    recipe = validate_recipe(
        {
            "model": {"backbone": "e2resnet18", "group": "rot4", "width_multiplier": TINY},
            "method": {"name": "hssl", "projector_hidden_dim": 8, "projector_out_dim": 4},
        }
    )
    torch.manual_seed(0)
    backbone = build_backbone(recipe.model, 3)
    objective = build_objective(recipe.method, backbone)
    objective(backbone, torch.rand(4, 3, 16, 16))["loss"].backward()  # moves BN statistics
    backbone.eval()
    eval_state = canonical_state(backbone)
    assert backbone.state_dict().keys() > eval_state.keys()  # escnn's eval-only buffers
    backbone.train()
    assert canonical_state(backbone).keys() == eval_state.keys()

    path = tmp_path / "checkpoint.safetensors"
    shapes = {"input": [3, 16, 16]}
    save_checkpoint(path, backbone, objective, recipe, epoch=1, feature_shapes=shapes)
    loaded = load_backbone(read_checkpoint(path), "test")
    images = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    backbone.eval()
    with torch.no_grad():
        expected, got = backbone(images), loaded(images)
    torch.testing.assert_close(got.feature_map, expected.feature_map, atol=1e-6, rtol=0)
    torch.testing.assert_close(got.invariant, expected.invariant, atol=1e-6, rtol=0)


def test_params_width_matches_resnet18_parameter_count() -> None:
    """Slow (a full-width C4 model, ~11M weights; built without initialisation to save time)."""
    plain = build_backbone(ModelConfig(backbone="resnet18", group="trivial"), 3)
    config = ModelConfig(backbone="e2resnet18", group="rot4", resnet_width="params")
    equivariant = build_backbone(config, 3, initialize=False)

    def count(model: torch.nn.Module) -> int:
        return sum(p.numel() for p in model.parameters() if p.requires_grad)

    assert abs(count(equivariant) / count(plain) - 1) < 0.1
