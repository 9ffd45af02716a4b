"""H-SSL (Keller et al. 2023): views from fibers equal input augmentations on an
equivariant backbone."""

import pytest
import torch

from hssl_cli.config import AugmentConfig, HsslConfig, ModelConfig, SimclrConfig
from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.recipe import validate_recipe

ROTATION_ONLY = AugmentConfig(
    crop_scale=(1.0, 1.0),
    crop_ratio=(1.0, 1.0),
    hflip=0,
    jitter_p=0,
    grayscale=0,
    group_element=True,
)


def make(group_name: str, structure: str, bundle: int = 1):
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(group=group_name, widths=[2, 4], structure=structure), 1)
    hssl = build_objective(
        HsslConfig(fiber_bundle_size=bundle, projector_hidden_dim=16, projector_out_dim=8),
        backbone,
    )
    simclr = build_objective(
        SimclrConfig(
            fiber_bundle_size=bundle,
            projector_hidden_dim=16,
            projector_out_dim=8,
            augment=ROTATION_ONLY,
        ),
        backbone,
    )
    simclr.head.load_state_dict(hssl.head.state_dict())  # one fixed head for both
    return backbone, hssl, simclr


def identity_gap(group_name: str, structure: str, bundle: int = 1) -> tuple[float, float]:
    """Relative gap between A-SSL and H-SSL embeddings, and between their losses."""
    from hssl_cli.losses import nt_xent

    backbone, hssl, simclr = make(group_name, structure, bundle)
    group = get_group(group_name)
    images = torch.rand(6, 1, 16, 16)
    first = torch.randint(group.order, (6,))
    second = (first + 1) % group.order
    inverse = torch.tensor(group.inverse_table)
    with torch.no_grad():
        rotated = tuple(group.act_on_images_per_sample(images, g) for g in (first, second))
        assl = simclr.head(
            torch.cat([simclr.read(backbone(v)) for v in rotated])
        )  # input rotated by g, identity fiber read
        fibers = backbone(images).fibers
        homomorphic = hssl.embed((fibers, fibers), (inverse[first], inverse[second]))
    ids = torch.arange(6).repeat(2)
    embed_gap = ((assl - homomorphic).norm() / homomorphic.norm()).item()
    loss_gap = abs(nt_xent(assl, ids, 0.5) - nt_xent(homomorphic, ids, 0.5)).item()
    return embed_gap, loss_gap


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
@pytest.mark.parametrize("bundle", [1, 2])
def test_hssl_equals_assl_exactly_on_equivariant_backbone(group_name: str, bundle: int) -> None:
    embed_gap, loss_gap = identity_gap(group_name, "equivariant", bundle)
    assert embed_gap < 1e-5
    assert loss_gap < 1e-5


def test_identity_fails_without_structure() -> None:
    embed_gap, _ = identity_gap("rot4", "unstructured")
    assert embed_gap > 0.1


class CountingBackbone(torch.nn.Module):
    def __init__(self, backbone: torch.nn.Module) -> None:
        super().__init__()
        self.inner = backbone
        self.group = backbone.group
        self.num_fields = backbone.num_fields
        self.calls: list[int] = []

    def forward(self, images: torch.Tensor):
        self.calls.append(len(images))
        return self.inner(images)


@pytest.mark.parametrize(
    ("augment", "all_fibers", "forwards", "views"),
    [
        (None, False, 1, 2),
        (AugmentConfig(hflip=0), False, 2, 2),
        (None, True, 1, 4),
        (AugmentConfig(hflip=0), True, 2, 8),
    ],
)
def test_forward_count_and_views(augment, all_fibers: bool, forwards: int, views: int) -> None:
    backbone, _, _ = make("rot4", "equivariant")
    counting = CountingBackbone(backbone)
    objective = build_objective(
        HsslConfig(
            augment=augment,
            all_fibers_positive=all_fibers,
            projector_hidden_dim=16,
            projector_out_dim=8,
        ),
        backbone,
    )
    seen = []
    objective.head.register_forward_hook(lambda module, args, out: seen.append(len(args[0])))
    result = objective(counting, torch.rand(5, 1, 16, 16))
    assert counting.calls == [5] * forwards  # one backbone forward per image per view source
    assert seen == [5 * views]
    assert torch.isfinite(result["loss"])
    result["loss"].backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_distinct_pairs_never_coincide_and_spread_limits_the_displacement() -> None:
    backbone, hssl, _ = make("rot4", "equivariant")
    torch.manual_seed(1)
    first, second = hssl.views.sample_pairs(torch.zeros(2000, 1, 4))
    assert bool((first != second).all())
    assert set(first.tolist()) == {0, 1, 2, 3}
    narrow = build_objective(HsslConfig(spread=2), backbone)
    first, second = narrow.views.sample_pairs(torch.zeros(2000, 1, 4))
    assert set(((second - first) % 4).tolist()) == {1}  # neighbourhood(2) = {e, rot90}


def test_recipe_checks() -> None:
    base = {"model": {"group": "rot4", "widths": [2]}}
    with pytest.raises(HsslUserError, match="fiber_bundle_size"):
        validate_recipe({**base, "method": {"name": "hssl", "fiber_bundle_size": 5}})
    with pytest.raises(HsslUserError, match="identical"):
        validate_recipe({"model": {"group": "trivial"}, "method": {"name": "hssl"}})
    with pytest.raises(HsslUserError, match="group_element"):
        validate_recipe({**base, "method": {"name": "hssl", "augment": {"group_element": True}}})
