"""The scale group: names, the image action (shrinking about the centre) and the fiber shift."""

import pytest
import torch

from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.recipe import validate_recipe
from hssl_cli.rescale import rescale_images
from hssl_cli.scale_group import ScaleGroup


def test_names_and_range() -> None:
    group = get_group("scale4")
    assert isinstance(group, ScaleGroup)
    assert (group.order, group.cyclic, group.is_trivial) == (4, False, False)
    assert [str(e) for e in group.elements] == ["x1", "x0.707", "x0.5", "x0.354"]
    assert get_group("scale3", 2.0).elements[1].factor == 0.5
    for bad in ("scale1", "scale17", "scale", "scales3"):
        with pytest.raises(HsslUserError):
            get_group(bad)


def test_escnn_backbones_refuse_a_scale_group_and_sesn_refuses_rotations() -> None:
    with pytest.raises(HsslUserError, match="sesn_cnn"):
        validate_recipe({"model": {"backbone": "cnn", "group": "scale3"}})
    with pytest.raises(HsslUserError, match="scale group"):
        validate_recipe({"model": {"backbone": "sesn_cnn", "group": "rot4"}})
    with pytest.raises(HsslUserError, match="scale_size"):
        validate_recipe({"model": {"backbone": "sesn_cnn", "group": "scale2", "scale_size": 3}})
    # The unstructured twin of an escnn backbone needs no escnn group: allowed.
    validate_recipe({"model": {"backbone": "cnn", "group": "scale3", "structure": "unstructured"}})


def test_shrinking_keeps_the_centre_and_scales_the_extent() -> None:
    image = torch.zeros(1, 1, 40, 40)
    image[..., 10:30, 10:30] = 1.0  # a centred 20x20 square
    half = rescale_images(image, 0.5)
    assert half.shape == image.shape
    ink = half[0, 0] > 0.5
    rows, cols = ink.any(1).nonzero().flatten(), ink.any(0).nonzero().flatten()
    assert (rows.min().item(), rows.max().item()) == (15, 24)  # 10 rows, centred
    assert (cols.min().item(), cols.max().item()) == (15, 24)
    assert half.sum().item() == pytest.approx(image.sum().item() / 4, rel=0.05)
    assert torch.equal(rescale_images(image, 1.0), image)


def test_per_image_factors_match_one_call_each() -> None:
    images = torch.rand(3, 2, 16, 16, generator=torch.Generator().manual_seed(0))
    factors = torch.tensor([1.0, 0.7, 0.5])
    together = rescale_images(images, factors)
    for index, factor in enumerate(factors.tolist()):
        alone = rescale_images(images[index : index + 1], factor)
        torch.testing.assert_close(together[index : index + 1], alone, atol=1e-5, rtol=0)


def test_group_action_on_images_is_a_shrink_by_q_to_the_k() -> None:
    group = get_group("scale3")
    images = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(group.act_on_images(images, 2), rescale_images(images, 0.5))
    per_sample = group.act_on_images_per_sample(images, torch.tensor([0, 1]))
    torch.testing.assert_close(per_sample[0], images[0])
    torch.testing.assert_close(per_sample[1:], group.act_on_images(images[1:], 1))


def test_fiber_shift_moves_fibers_off_the_edge() -> None:
    group = get_group("scale4")
    fibers = torch.arange(8.0).view(1, 2, 4)  # two fields, scales 0..3
    shifted = group.act_on_fibers(fibers, 1)
    assert shifted.tolist() == [[[1, 2, 3, 0], [5, 6, 7, 0]]]  # scale 3 has no source
    assert torch.equal(group.act_on_fibers(fibers, 0), fibers)
    assert group.shared_scales(1) == 3
    assert group.neighbourhood(2) == [0, 1]  # one-sided: identity, then coarser
    with pytest.raises(HsslUserError):
        group.neighbourhood(5)
