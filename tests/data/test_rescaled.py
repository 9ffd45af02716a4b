"""data.rescale: a scale-varied copy of a data set (SESN's MNIST-scale)."""

from __future__ import annotations

import pytest
import torch

from hssl_cli.config import DataConfig
from hssl_cli.data import load_images
from hssl_cli.data.rescaled import rescale_factors, rescale_uint8
from hssl_cli.errors import HsslUserError
from hssl_cli.recipe import validate_recipe

LIMITS = {"name": "digits", "limit_train": 96, "limit_test": 64}


@pytest.fixture(scope="module")
def plain() -> dict[str, torch.Tensor]:
    config = DataConfig(**LIMITS)
    return {split: load_images(config, split).images for split in ("train", "test")}


def test_default_is_off() -> None:
    assert validate_recipe({}).data.rescale is None


def test_valid_range_is_accepted() -> None:
    recipe = validate_recipe({"data": {"rescale": [0.3, 1.0]}})
    assert recipe.data.rescale == (0.3, 1.0)
    assert validate_recipe({"data": {"rescale": [0.5, 0.5]}}).data.rescale == (0.5, 0.5)


@pytest.mark.parametrize(
    "bad",
    [[0.0, 1.0], [-0.2, 0.5], [0.8, 0.4], [0.5, 1.5], [0.5], [0.3, 0.6, 0.9], "0.5", 0.5],
)
def test_bad_range_is_refused(bad: object) -> None:
    with pytest.raises(HsslUserError, match=r"data.rescale must be \[low, high\]"):
        validate_recipe({"data": {"rescale": bad}})


def test_range_error_names_the_key_and_the_bounds() -> None:
    with pytest.raises(HsslUserError, match=r"data\.rescale must be \[low, high\]"):
        validate_recipe({"data": {"rescale": [0.9, 0.2]}})


@pytest.mark.parametrize("in_memory", ["auto", True, False])
def test_imagefolder_is_refused(in_memory: object) -> None:
    data = {"name": "imagefolder", "root": "x", "rescale": [0.3, 1.0], "in_memory": in_memory}
    with pytest.raises(HsslUserError, match="data.rescale is not supported with imagefolder"):
        validate_recipe({"data": data})


def test_factors_are_fixed_per_split_and_in_range() -> None:
    train = rescale_factors(500, 0.3, 1.0, "train")
    assert torch.equal(train, rescale_factors(500, 0.3, 1.0, "train"))
    assert not torch.equal(train, rescale_factors(500, 0.3, 1.0, "test"))
    assert train.min() >= 0.3 and train.max() <= 1.0
    assert train.std() > 0.1  # spread over the range, one factor per image
    assert torch.equal(rescale_factors(7, 0.5, 0.5, "test"), torch.full((7,), 0.5))


def _extent(images: torch.Tensor) -> torch.Tensor:
    """Per image, the height + width of the bounding box of its nonzero pixels."""
    ink = images.flatten(1, 2) > 0  # [N, H, W] (one channel)
    rows, cols = ink.any(2), ink.any(1)
    spans = []
    for axis in (rows, cols):
        index = torch.arange(axis.shape[1])
        first = torch.where(axis, index, axis.shape[1]).min(1).values
        last = torch.where(axis, index, -1).max(1).values
        spans.append((last - first + 1).clamp_min(0))
    return spans[0] + spans[1]


def test_half_scale_shrinks_ink_and_extent(plain: dict[str, torch.Tensor]) -> None:
    for split, before in plain.items():
        after = load_images(DataConfig(**LIMITS, rescale=(0.5, 0.5)), split).images
        assert after.shape == before.shape and after.dtype == torch.uint8
        ratio = after.double().sum() / before.double().sum()
        assert 0.2 < ratio < 0.3, f"{split}: ink ratio {float(ratio):.3f}, expected ~0.25"
        shrunk, full = _extent(after), _extent(before)
        assert (shrunk < full).all()
        assert shrunk.double().mean() < 0.7 * full.double().mean()


def test_same_recipe_gives_the_same_images(plain: dict[str, torch.Tensor]) -> None:
    config = DataConfig(**LIMITS, rescale=(0.3, 1.0))
    first = load_images(config, "train").images
    assert torch.equal(first, load_images(config, "train").images)
    assert first.shape == plain["train"].shape and first.dtype == torch.uint8
    # Each image is shrunk by its own factor of the train split.
    factors = rescale_factors(len(first), 0.3, 1.0, "train")
    assert torch.equal(first, rescale_uint8(plain["train"], factors))


def test_rescale_applies_after_image_size() -> None:
    sized = {**LIMITS, "image_size": 20}
    before = load_images(DataConfig(**sized), "test").images
    after = load_images(DataConfig(**sized, rescale=(0.5, 0.5)), "test").images
    assert after.shape == before.shape == (64, 1, 20, 20)
    factors = rescale_factors(64, 0.5, 0.5, "test")
    assert torch.equal(after, rescale_uint8(before, factors))


def test_rescale_uint8_chunks_like_one_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    import hssl_cli.data.rescaled as rescaled

    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (10, 3, 12, 12), dtype=torch.uint8, generator=generator)
    factors = torch.linspace(0.3, 1.0, 10)
    whole = rescale_uint8(images, factors)
    monkeypatch.setattr(rescaled, "CHUNK", 3)
    chunked = rescaled.rescale_uint8(images, factors)
    # The same per image up to float rounding: at most one grey level, rarely.
    difference = (chunked.int() - whole.int()).abs()
    assert difference.max() <= 1 and (difference > 0).float().mean() < 0.01
    assert torch.equal(whole[-1], images[-1])  # factor 1: unchanged
