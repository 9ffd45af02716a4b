"""Which view source reads a group's fibers: a cyclic axis or a scale axis with edges."""

from __future__ import annotations

from typing import Literal

from hssl_cli.groups import AnyGroup, Group
from hssl_cli.objectives.fiber_views import FiberViews, GroupFiberViews
from hssl_cli.objectives.scale_views import ScaleFiberViews
from hssl_cli.scale_group import ScaleGroup


def group_fiber_views(
    group: AnyGroup,
    fiber_bundle_size: int,
    bundle_pool: Literal["mean", "max"],
    spread: int | None = None,
    distinct: bool = True,
) -> GroupFiberViews:
    """Fiber views for ``group``: rotations and flips wrap around, scales do not."""
    if isinstance(group, ScaleGroup):
        return ScaleFiberViews(group, fiber_bundle_size, bundle_pool, spread, distinct)
    assert isinstance(group, Group)
    return FiberViews(group, fiber_bundle_size, bundle_pool, spread, distinct)
