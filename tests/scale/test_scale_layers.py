"""Scale-equivariant layers: shrinking the input by q^k shifts the scale axis by k.

On smooth inputs and inside the shrunk canvas the documented tolerance is 0.05 (relative
error) for one layer; the unstructured twin of the same shapes is far off.
"""

import pytest
import torch

from hssl_cli.models import build_backbone
from hssl_cli.models.scale_basis import ScaleBasisSpec, hermite, scale_basis
from hssl_cli.models.scale_conv import LiftingScaleConv, ScaleGroupConv, ScalePointwiseConv
from hssl_cli.models.scale_norm import ScaleBatchNorm
from hssl_cli.recipe import validate_recipe
from hssl_cli.rescale import rescale_images
from hssl_cli.scale_equivariance import canvas_mask
from hssl_cli.scale_group import scale_group
from hssl_cli.structured import pool_group

TOLERANCE = 0.05
SPEC = ScaleBasisSpec.geometric(kernel_size=11, basis_size=2, scales=3, min_scale=0.9, step=2**0.5)


def shift_error(before: torch.Tensor, after: torch.Tensor, step: int, factor: float) -> float:
    """``||after[:, :, s] - shrink(before[:, :, s + k])||`` relative, over the shared scales,
    inside the shrunk canvas."""
    kept = before.shape[2] - step
    source = before[:, :, step:]
    expected = rescale_images(source.flatten(1, 2), factor).view_as(source)
    actual = after[:, :, :kept]
    expected, actual = canvas_mask(expected, factor), canvas_mask(actual, factor)
    return float((actual - expected).norm() / expected.norm())


def test_hermite_polynomials() -> None:
    x = torch.linspace(-2, 2, 5)
    torch.testing.assert_close(hermite(0, x), torch.ones(5))
    torch.testing.assert_close(hermite(2, x), 4 * x**2 - 2)
    torch.testing.assert_close(hermite(3, x), 8 * x**3 - 12 * x)


def test_basis_is_cached_and_shaped() -> None:
    basis = scale_basis(SPEC)
    assert basis.shape == (4, 3, 11, 11)
    assert scale_basis(ScaleBasisSpec(11, 2, SPEC.widths)) is basis  # computed once
    # The same function at a coarser scale is wider: more of its mass off the centre.
    centre = basis[0, :, 5, 5]
    assert centre[0] > centre[1] > centre[2]


@pytest.mark.parametrize("step", [1, 2])
def test_lifting_convolution_is_scale_equivariant(blobs: torch.Tensor, step: int) -> None:
    torch.manual_seed(0)
    conv = LiftingScaleConv(1, 6, SPEC)
    group = scale_group("scale3")
    with torch.no_grad():
        before, after = conv(blobs), conv(group.act_on_images(blobs, step))
    assert before.shape == (4, 6, 3, 48, 48)
    assert shift_error(before, after, step, group.elements[step].factor) < TOLERANCE


@pytest.mark.parametrize("scale_size", [1, 2])
def test_group_convolution_is_scale_equivariant(blobs: torch.Tensor, scale_size: int) -> None:
    """On the scales whose interaction range stays on the axis (the edge breaks the rest)."""
    torch.manual_seed(0)
    lift, conv = LiftingScaleConv(1, 4, SPEC), ScaleGroupConv(4, 5, SPEC, scale_size)
    group = scale_group("scale3")
    with torch.no_grad():
        before = conv(lift(blobs))
        after = conv(lift(group.act_on_images(blobs, 1)))
    assert before.shape == (4, 5, 3, 48, 48)
    usable = 3 - (scale_size - 1)  # output scales that read no padding
    error = shift_error(before[:, :, :usable], after[:, :, :usable], 1, 2**-0.5)
    assert error < TOLERANCE


def test_group_convolution_mixes_neighbouring_scales() -> None:
    torch.manual_seed(0)
    conv = ScaleGroupConv(2, 3, SPEC, scale_size=2)
    maps = torch.zeros(1, 2, 3, 12, 12)
    maps[:, :, 2, 6, 6] = 1.0  # only the coarsest input scale is non-zero
    with torch.no_grad():
        out = conv(maps)
    assert out[:, :, 0].abs().max() == 0  # scale 0 reads scales 0 and 1
    assert out[:, :, 1].abs().max() > 0  # scale 1 reads 1 and 2
    assert out[:, :, 2].abs().max() > 0


def test_pointwise_batch_norm_and_pooling_treat_scales_alike() -> None:
    torch.manual_seed(0)
    maps = torch.randn(2, 3, 4, 5, 5)
    rolled = maps.roll(1, dims=2)
    conv = ScalePointwiseConv(3, 2)
    torch.testing.assert_close(conv(rolled), conv(maps).roll(1, dims=2))
    norm = ScaleBatchNorm(3).eval()
    norm.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0]))
    torch.testing.assert_close(norm(rolled), norm(maps).roll(1, dims=2))
    # The invariant reading, a max over the scale axis (the group axis of any backbone).
    torch.testing.assert_close(pool_group(rolled, "max"), pool_group(maps, "max"))


def tiny_model(structure: str):
    recipe = validate_recipe(
        {
            "model": {
                "backbone": "sesn_cnn",
                "group": "scale3",
                "widths": [4, 6],
                "kernel_size": 11,
                "basis_size": 2,
                "structure": structure,
            }
        }
    )
    torch.manual_seed(0)
    return build_backbone(recipe.model, 1).eval()


def test_backbone_outputs_and_unstructured_twin_shapes(blobs: torch.Tensor) -> None:
    model, twin = tiny_model("equivariant"), tiny_model("unstructured")
    with torch.no_grad():
        output, twin_output = model(blobs), twin(blobs)
        stages, twin_stages = model.stage_outputs(blobs), twin.stage_outputs(blobs)
    assert output.feature_map.shape == twin_output.feature_map.shape == (4, 6, 3, 24, 24)
    assert output.fibers.shape == (4, 6, 3) and output.invariant.shape == (4, 6)
    assert [(n, s.shape) for n, s in stages] == [(n, s.shape) for n, s in twin_stages]
    assert [n for n, _ in stages] == ["conv1", "pool1", "conv2"]


def test_backbone_is_equivariant_and_its_unstructured_twin_is_not(blobs: torch.Tensor) -> None:
    group = scale_group("scale3")
    errors = {}
    for structure in ("equivariant", "unstructured"):
        model = tiny_model(structure)
        with torch.no_grad():
            before = model.stage_outputs(blobs)[0][1]
            after = model.stage_outputs(group.act_on_images(blobs, 1))[0][1]
        fields = before.view(4, -1, 3, 48, 48)
        errors[structure] = shift_error(fields, after.view_as(fields), 1, 2**-0.5)
    assert errors["equivariant"] < TOLERANCE
    assert errors["unstructured"] > 0.5
