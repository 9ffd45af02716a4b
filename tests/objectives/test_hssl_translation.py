"""H-SSL for the translation group: views are spatial windows of a plain CNN's map."""

import pytest
import torch

from hssl_cli.config import HsslConfig, ModelConfig
from hssl_cli.errors import HsslUserError
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.objectives.fiber_views import SpatialViews
from hssl_cli.recipe import validate_recipe
from hssl_cli.structured import BackboneOutput


def test_window_reading_matches_manual_pooling() -> None:
    torch.manual_seed(0)
    feature_map = torch.randn(2, 3, 5, 5)
    views = SpatialViews(window=2, pool="mean")
    windows = views.positions(BackboneOutput(feature_map.unsqueeze(2), None, None))
    assert windows.shape == (2, 3, 4, 4)
    position = torch.tensor([0, 4 * 2 + 3])  # (0, 0) for image 0, (2, 3) for image 1
    read = views.read(windows, position)
    assert torch.allclose(read[0], feature_map[0, :, 0:2, 0:2].mean(dim=(1, 2)))
    assert torch.allclose(read[1], feature_map[1, :, 2:4, 3:5].mean(dim=(1, 2)))


def test_pairs_respect_spread_and_distinctness() -> None:
    torch.manual_seed(0)
    views = SpatialViews(window=1, pool="mean", spread=1, distinct=True)
    first, second = views.sample_pairs(torch.zeros(4000, 1, 6, 6))
    dy = second // 6 - first // 6
    dx = second % 6 - first % 6
    assert int(dy.abs().max()) <= 1 and int(dx.abs().max()) <= 1
    interior = (first // 6 > 0) & (first // 6 < 5) & (first % 6 > 0) & (first % 6 < 5)
    assert bool((first[interior] != second[interior]).all())


def test_translation_equivariance_of_the_plain_cnn_is_what_views_rely_on() -> None:
    """Shifting the input by 2 pixels shifts the stride-1 first layer's map by 2 (interior)."""
    torch.manual_seed(0)
    model = build_backbone(ModelConfig(group="trivial", widths=[3]), 1).eval()
    images = torch.rand(2, 1, 12, 12)
    shifted = torch.roll(images, shifts=2, dims=3)
    with torch.no_grad():
        a = model(images).feature_map[..., 3:9, 3:7]
        b = model(shifted).feature_map[..., 3:9, 5:9]
    assert torch.allclose(a, b, atol=1e-5)


@pytest.mark.parametrize("all_fibers", [False, True])
def test_translation_hssl_trains_with_one_forward(all_fibers: bool) -> None:
    recipe = validate_recipe(
        {
            "model": {"group": "trivial", "widths": [2, 4]},
            "method": {
                "name": "hssl",
                "fibers": "translation",
                "fiber_bundle_size": 2,
                "spread": 2,
                "all_fibers_positive": all_fibers,
            },
        }
    )
    backbone = build_backbone(recipe.model, 1)
    calls = []
    backbone.register_forward_hook(lambda module, args, out: calls.append(1))
    objective = build_objective(recipe.method, backbone)
    values = objective(backbone, torch.rand(4, 1, 16, 16))
    assert calls == [1]
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    assert all(p.grad is not None for p in backbone.parameters())


def test_window_larger_than_the_map_is_a_user_error() -> None:
    backbone = build_backbone(ModelConfig(group="trivial", widths=[2, 4]), 1)
    objective = build_objective(HsslConfig(fibers="translation", fiber_bundle_size=9), backbone)
    with pytest.raises(HsslUserError, match="fiber_bundle_size=9"):
        objective(backbone, torch.rand(4, 1, 16, 16))
