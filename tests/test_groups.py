"""Groups: the image action, the fiber permutations and escnn must all agree."""

import math

import pytest
import torch
from escnn import nn as enn

from hssl_cli.errors import HsslUserError
from hssl_cli.groups import GroupElement, get_group, rotate_by_angle, rotate_images

EXACT_GROUPS = ["rot4", "rot4flip", "flip"]


def escnn_action(group, images, element):
    """escnn's own transformation of a stack of scalar (trivial) fields."""
    field = enn.FieldType(group.gspace, images.shape[1] * [group.gspace.trivial_repr])
    return enn.GeometricTensor(images, field).transform(element).tensor


@pytest.mark.parametrize("name", EXACT_GROUPS)
def test_image_action_equals_escnn_transform(name):
    group = get_group(name)
    images = torch.rand(2, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    elements = list(group.gspace.fibergroup.elements)
    assert len(elements) == group.order
    for index, element in enumerate(elements):
        expected = escnn_action(group, images, element)
        torch.testing.assert_close(group.act_on_images(images, index), expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", EXACT_GROUPS)
def test_non_identity_elements_move_the_image(name):
    group = get_group(name)
    images = torch.rand(1, 1, 6, 6, generator=torch.Generator().manual_seed(2))
    assert torch.equal(group.act_on_images(images, 0), images)
    for index in range(1, group.order):
        assert not torch.allclose(group.act_on_images(images, index), images)


@pytest.mark.parametrize("name", ["rot4", "rot4flip", "rot8", "flip", "rot3"])
def test_fiber_permutations_equal_escnn_regular_representation(name):
    group = get_group(name)
    fibers = torch.randn(2, 3, group.order, generator=torch.Generator().manual_seed(3))
    regular = group.gspace.fibergroup.regular_representation
    for index, element in enumerate(group.gspace.fibergroup.elements):
        matrix = torch.as_tensor(regular(element), dtype=torch.float32)
        expected = torch.einsum("ij,bcj->bci", matrix, fibers)
        torch.testing.assert_close(group.act_on_fibers(fibers, index), expected)
        assert sorted(group.fiber_permutations[index]) == list(range(group.order))


@pytest.mark.parametrize("name", ["rot4", "rot4flip", "rot8"])
def test_fiber_action_follows_the_multiplication_table(name):
    group = get_group(name)
    table = group.multiplication_table
    fibers = torch.randn(2, 3, group.order, generator=torch.Generator().manual_seed(4))
    for a in range(group.order):
        for b in range(group.order):
            twice = group.act_on_fibers(group.act_on_fibers(fibers, a), b)
            assert torch.equal(twice, group.act_on_fibers(fibers, table[b][a])), (a, b)


def test_fiber_action_on_another_axis():
    group = get_group("rot4")
    fibers = torch.arange(8.0).view(2, 4)
    perm = group.fiber_permutations[1]
    assert torch.equal(group.act_on_fibers(fibers, 1, axis=1), fibers[:, perm])


@pytest.mark.parametrize("name", ["rot4", "rot4flip"])
def test_image_action_is_a_group_action(name):
    group = get_group(name)
    table = group.multiplication_table
    images = torch.rand(2, 2, 6, 6, generator=torch.Generator().manual_seed(5))
    for a in range(group.order):
        for b in range(group.order):
            twice = group.act_on_images(group.act_on_images(images, a), b)
            assert torch.equal(twice, group.act_on_images(images, table[b][a])), (a, b)


def test_elements_follow_escnn_order_and_are_flip_then_rotation():
    group = get_group("rot4flip")
    assert [str(e) for e in group.elements] == [
        "rot0",
        "rot90",
        "rot180",
        "rot270",
        "flip.rot0",
        "flip.rot90",
        "flip.rot180",
        "flip.rot270",
    ]
    images = torch.rand(1, 1, 5, 5, generator=torch.Generator().manual_seed(6))
    expected = torch.rot90(torch.flip(images, (3,)), 1, (2, 3))
    assert torch.equal(
        group.act_on_images(images, group.elements.index(GroupElement(True, 1, 4))), expected
    )
    assert [str(e) for e in get_group("flip").elements] == ["rot0", "flip.rot0"]
    assert GroupElement(False, 1, 8).degrees == 45.0


def test_cyclic_multiplication_adds_rotations():
    for n in (4, 8):
        table = get_group(f"rot{n}").multiplication_table
        assert table == [[(a + b) % n for b in range(n)] for a in range(n)]


def test_dihedral_group_is_not_commutative():
    table = get_group("rot4flip").multiplication_table
    assert table[1][4] != table[4][1]


@pytest.mark.parametrize("name", ["trivial", "flip", "rot4", "rot4flip", "rot8"])
def test_inverse_table(name):
    group = get_group(name)
    table = group.multiplication_table
    for g, inverse in enumerate(group.inverse_table):
        assert table[g][inverse] == 0
        assert table[inverse][g] == 0
    assert table[0] == list(range(group.order))  # index 0 is the identity


def test_known_inverses():
    assert get_group("rot4").inverse_table == [0, 3, 2, 1]
    assert get_group("rot4flip").inverse_table == [0, 3, 2, 1, 4, 5, 6, 7]


@pytest.mark.parametrize(
    ("name", "order"),
    [("trivial", 1), ("flip", 2), ("rot2", 2), ("rot4", 4), ("rot4flip", 8), ("rot8", 8)],
)
def test_order(name, order):
    group = get_group(name)
    assert group.order == order
    assert len(group.elements) == order
    assert group.is_trivial == (order == 1)


def test_trivial_group_acts_as_identity():
    group = get_group("trivial")
    images = torch.rand(2, 1, 4, 4)
    fibers = torch.rand(2, 3, 1)
    assert torch.equal(group.act_on_images(images, 0), images)
    assert torch.equal(group.act_on_fibers(fibers, 0), fibers)
    assert group.multiplication_table == [[0]]
    assert group.neighbourhood(1) == [0]


def test_neighbourhood():
    rot4 = get_group("rot4")
    assert rot4.neighbourhood(1) == [0]
    assert rot4.neighbourhood(3) == [0, 1, 3]
    assert rot4.neighbourhood(4) == [0, 1, 3, 2]
    assert get_group("rot8").neighbourhood(5) == [0, 1, 7, 2, 6]
    assert get_group("rot4flip").neighbourhood(5) == [0, 1, 3, 2, 4]
    for name in ("rot4", "rot4flip", "rot8", "flip"):
        group = get_group(name)
        for size in range(1, group.order + 1):
            chosen = group.neighbourhood(size)
            assert len(chosen) == len(set(chosen)) == size
            assert chosen[0] == 0


@pytest.mark.parametrize("size", [0, 5, -1])
def test_neighbourhood_too_large_or_empty(size):
    with pytest.raises(HsslUserError, match="does not fit group rot4 of order 4; use 1..4"):
        get_group("rot4").neighbourhood(size)


def test_rotate_by_angle_at_90_degrees_equals_rot90():
    images = torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(
        rotate_by_angle(images, math.pi / 2), torch.rot90(images, 1, (2, 3)), atol=1e-5, rtol=0
    )


def test_rot8_45_degrees_is_interpolated_but_twice_is_close_to_rot90():
    group = get_group("rot8")
    noise = torch.rand(2, 1, 16, 16, generator=torch.Generator().manual_seed(8))
    once = group.act_on_images(noise, 1)
    for k in range(4):
        assert (once - torch.rot90(noise, k, (2, 3))).abs().max() > 0.1
    torch.testing.assert_close(once, rotate_images(GroupElement(False, 1, 8), noise))

    axis = torch.linspace(0, 1, 16)
    blob = torch.exp(-8 * ((axis[None, :] - 0.5) ** 2 + (axis[:, None] - 0.5) ** 2))
    blob = blob.expand(2, 1, 16, 16)
    twice = group.act_on_images(group.act_on_images(blob, 1), 1)
    interior = (twice - torch.rot90(blob, 1, (2, 3)))[..., 4:12, 4:12]
    assert interior.abs().max() < 0.05
    # Exact multiples of 90 degrees in rot8 use rot90, not interpolation.
    assert torch.equal(group.act_on_images(noise, 2), torch.rot90(noise, 1, (2, 3)))


def test_act_on_images_per_sample():
    group = get_group("rot4")
    images = torch.rand(5, 1, 6, 6, generator=torch.Generator().manual_seed(9))
    elements = torch.tensor([0, 3, 1, 3, 2])
    out = group.act_on_images_per_sample(images, elements)
    for b, g in enumerate(elements.tolist()):
        assert torch.equal(out[b : b + 1], group.act_on_images(images[b : b + 1], g))


def test_get_group_is_cached():
    assert get_group("rot4") is get_group("rot4")


@pytest.mark.parametrize("name", ["bogus", "rot", "rot0", "rot65", "hex", "rot4flipflip"])
def test_get_group_rejects_unknown_names(name):
    with pytest.raises(HsslUserError, match=f"unknown group '{name}'"):
        get_group(name)
