"""H-SSL on a scale axis with edges: only bundles that fit, only pairs whose fibers exist."""

import pytest
import torch

from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.objectives.fiber_views import FiberViews
from hssl_cli.objectives.group_views import group_fiber_views
from hssl_cli.objectives.scale_views import ScaleFiberViews, valid_scale_pairs
from hssl_cli.recipe import validate_recipe
from hssl_cli.scale_equivariance import fiber_shift_error, shifted_fibers


def test_pairs_respect_the_edges_the_spread_and_distinctness() -> None:
    assert valid_scale_pairs(3, 1, None, True) == [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]
    assert valid_scale_pairs(3, 2, None, True) == [(0, 1), (1, 0)]  # a bundle fits at 0 and 1
    assert valid_scale_pairs(4, 1, 2, True) == [(0, 1), (1, 0), (1, 2), (2, 1), (2, 3), (3, 2)]
    assert (1, 1) in valid_scale_pairs(3, 1, None, False)
    assert valid_scale_pairs(3, 3, None, True) == []


def test_views_read_bundles_of_consecutive_scales() -> None:
    views = ScaleFiberViews(get_group("scale4"), 2, "mean")
    fibers = torch.arange(8.0).view(1, 2, 4).repeat(2, 1, 1)  # fields [0..3], [4..7]
    read = views.read(fibers, torch.tensor([0, 2]))
    assert read.tolist() == [[0.5, 4.5], [2.5, 6.5]]
    assert views.count(fibers) == 3
    every = views.every_view(fibers)  # position-major: [P * B, C]
    assert every[:, 0].tolist() == [0.5, 0.5, 1.5, 1.5, 2.5, 2.5]


def test_sampled_pairs_are_valid_and_cover_every_valid_pair() -> None:
    torch.manual_seed(0)
    views = ScaleFiberViews(get_group("scale4"), 2, "mean", spread=2)
    first, second = views.sample_pairs(torch.zeros(4000, 1, 4))
    pairs = set(zip(first.tolist(), second.tolist(), strict=True))
    assert pairs == set(valid_scale_pairs(4, 2, 2, True))
    assert max(first.max().item(), second.max().item()) <= 2  # a 2-bundle starts at <= 2


def test_factory_picks_the_view_source_by_axis_and_refuses_impossible_pairs() -> None:
    assert isinstance(group_fiber_views(get_group("rot4"), 1, "mean"), FiberViews)
    assert isinstance(group_fiber_views(get_group("scale3"), 1, "mean"), ScaleFiberViews)
    with pytest.raises(HsslUserError, match="no two views fit"):
        ScaleFiberViews(get_group("scale3"), 3, "mean")


def test_recipes_refuse_bundles_that_leave_one_place_and_orbit_pooling() -> None:
    model = {"backbone": "sesn_cnn", "group": "scale3"}
    with pytest.raises(HsslUserError, match="fits at one place"):
        validate_recipe({"model": model, "method": {"name": "hssl", "fiber_bundle_size": 3}})
    with pytest.raises(HsslUserError, match="not cyclic"):
        validate_recipe({"model": model, "method": {"name": "invcontrast"}})
    validate_recipe({"model": model, "method": {"name": "hssl", "fiber_bundle_size": 2}})


def test_fractional_and_negative_fiber_shifts() -> None:
    fibers = torch.tensor([[[0.0, 10.0, 20.0, 30.0]]])
    assert shifted_fibers(fibers, 1)[0].tolist() == [[[10.0, 20.0, 30.0]]]
    assert shifted_fibers(fibers, 0.5)[0].tolist() == [[[5.0, 15.0, 25.0]]]
    assert shifted_fibers(fibers, -1)[0].tolist() == [[[0.0, 10.0, 20.0]]]
    assert shifted_fibers(fibers, 4)[1] == 0
    moved = torch.tensor([[[10.0, 20.0, 30.0, 99.0]]])  # the last scale has no counterpart
    assert fiber_shift_error(moved, fibers, 1) == 0.0
    assert fiber_shift_error(moved, fibers, 0) > 0.5
    assert fiber_shift_error(moved, fibers, 4) is None
