"""Batched base augmentations: shapes, ranges, identities and hand-set parameters."""

import pytest
import torch
import torch.nn.functional as F

from hssl_cli.augment import BaseAugmentation
from hssl_cli.config import AugmentConfig
from hssl_cli.groups import get_group

CPU = torch.device("cpu")
NONE = {
    "crop_scale": (1.0, 1.0),
    "crop_ratio": (1.0, 1.0),
    "hflip": 0.0,
    "jitter_p": 0.0,
    "grayscale": 0.0,
    "group_element": False,
}


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def config(**changes):
    return AugmentConfig(**{**NONE, **changes})


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_default_pipeline_keeps_shape_dtype_and_range(channels, dtype):
    images = torch.rand(16, channels, 12, 10, generator=gen(1), dtype=dtype)
    out = BaseAugmentation(AugmentConfig(jitter_p=1.0, grayscale=0.5))(images, gen(2))
    assert out.shape == images.shape
    assert out.dtype == dtype
    assert out.min() >= 0
    assert out.max() <= 1
    assert not torch.allclose(out, images)


@pytest.mark.parametrize("channels", [1, 3])
def test_all_off_is_exactly_the_identity(channels):
    images = torch.rand(4, channels, 8, 8, generator=gen(3))
    augment = BaseAugmentation(config())
    assert torch.equal(augment(images, gen(4)), images)


def test_apply_is_deterministic_given_params():
    augment = BaseAugmentation(AugmentConfig(jitter_p=1.0, grayscale=0.5, hflip=0.5))
    images = torch.rand(6, 3, 8, 8, generator=gen(5))
    params = augment.sample(6, CPU, gen(6))
    first = augment.apply(images, params)
    assert torch.equal(augment.apply(images, params), first)
    again = augment.sample(6, CPU, gen(6))
    assert all(torch.equal(params[key], again[key]) for key in params)


def test_each_sample_draws_its_own_params():
    augment = BaseAugmentation(AugmentConfig())
    params = augment.sample(32, CPU, gen(7))
    for key in ("crop_w", "crop_h", "crop_x", "crop_y", "brightness", "hue"):
        assert params[key].shape == (32,)
        assert params[key].unique().numel() > 16, key
    assert 0 < params["flip"].sum() < 32


def test_sampled_params_respect_the_config():
    cfg = AugmentConfig(crop_scale=(0.25, 0.5), crop_ratio=(1.0, 1.0), jitter=(0.2, 0, 0, 0.05))
    params = BaseAugmentation(cfg).sample(256, CPU, gen(8))
    area = params["crop_w"] * params["crop_h"]
    assert area.min() >= 0.25 - 1e-6
    assert area.max() <= 0.5 + 1e-6
    torch.testing.assert_close(params["crop_w"], params["crop_h"])
    # The crop window stays inside the image.
    assert (params["crop_x"] - params["crop_w"] / 2).min() >= -1e-6
    assert (params["crop_x"] + params["crop_w"] / 2).max() <= 1 + 1e-6
    assert params["brightness"].min() >= 0.8
    assert params["brightness"].max() <= 1.2
    assert params["hue"].abs().max() <= 0.05
    assert "group_element" not in params


def test_hflip_with_full_crop_mirrors_the_width():
    images = torch.rand(4, 3, 8, 6, generator=gen(9))
    out = BaseAugmentation(config(hflip=1.0))(images, gen(10))
    torch.testing.assert_close(out, torch.flip(images, (3,)), atol=1e-5, rtol=0)


def test_grayscale_gives_equal_channels():
    images = torch.rand(4, 3, 8, 8, generator=gen(11))
    out = BaseAugmentation(config(grayscale=1.0))(images, gen(12))
    torch.testing.assert_close(out[:, 0], out[:, 1])
    torch.testing.assert_close(out[:, 0], out[:, 2])
    luma = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    torch.testing.assert_close(out[:, 0], luma)


def test_grayscale_leaves_single_channel_images_alone():
    images = torch.rand(4, 1, 8, 8, generator=gen(13))
    assert torch.equal(BaseAugmentation(config(grayscale=1.0))(images, gen(14)), images)


def test_group_element_applies_the_sampled_rotations():
    group = get_group("rot4")
    augment = BaseAugmentation(config(group_element=True), group)
    images = torch.rand(16, 1, 6, 6, generator=gen(15))
    params = augment.sample(16, CPU, gen(16))
    elements = params["group_element"]
    assert elements.dtype == torch.long
    assert elements.min() >= 0
    assert elements.max() < group.order
    assert elements.unique().numel() > 1
    out = augment.apply(images, params)
    assert torch.equal(out, group.act_on_images_per_sample(images, elements))
    for b in range(16):
        expected = torch.rot90(images[b], int(elements[b]), (1, 2))
        assert torch.equal(out[b], expected)


def test_group_element_needs_a_group():
    augment = BaseAugmentation(config(group_element=True))
    assert "group_element" not in augment.sample(4, CPU, gen(17))


def crop_params(augment, batch):
    params = augment.sample(batch, CPU, gen(18))
    half = torch.full((batch,), 0.5)
    quarter = torch.full((batch,), 0.25)
    params.update(crop_w=half, crop_h=half, crop_x=quarter, crop_y=quarter)
    return params


def test_hand_set_crop_zooms_into_the_top_left_quadrant():
    augment = BaseAugmentation(config(crop_scale=(0.25, 0.25)))
    ramp = (8 * torch.arange(8.0)[:, None] + torch.arange(8.0)[None, :]) / 64  # value 8i + j
    images = ramp.expand(2, 1, 8, 8)
    out = augment.apply(images, crop_params(augment, 2))
    # Output pixel k samples input coordinate (2k - 1) / 4, clamped at the border.
    source = ((2 * torch.arange(8.0) - 1) / 4).clamp_min(0)
    expected = (8 * source[:, None] + source[None, :]) / 64
    torch.testing.assert_close(out, expected.expand(2, 1, 8, 8), atol=1e-5, rtol=0)
    upsampled = F.interpolate(images[..., :4, :4], size=(8, 8), mode="bilinear")
    assert (out - upsampled).abs().max() < 0.05


def test_crop_lowers_high_frequency_energy_of_a_checkerboard():
    index = torch.arange(16)
    board = ((index[:, None] + index[None, :]) % 2).float().expand(2, 1, 16, 16)
    augment = BaseAugmentation(config(crop_scale=(0.25, 0.25)))
    zoomed = augment.apply(board, crop_params(augment, 2))

    def high_frequency(x):
        return (x[..., 1:] - x[..., :-1]).pow(2).mean()

    assert high_frequency(zoomed) < 0.5 * high_frequency(board)
    assert zoomed.shape == board.shape


def test_flip_and_crop_compose():
    augment = BaseAugmentation(config(crop_scale=(0.25, 0.25)))
    images = torch.rand(2, 1, 8, 8, generator=gen(19))
    params = crop_params(augment, 2)
    plain = augment.apply(images, {**params, "flip": torch.zeros(2)})
    flipped = augment.apply(images, {**params, "flip": torch.ones(2)})
    torch.testing.assert_close(flipped, torch.flip(plain, (3,)), atol=1e-5, rtol=0)


def test_brightness_only_jitter_scales_grey_images():
    augment = BaseAugmentation(config(jitter_p=1.0, jitter=(0.5, 0.0, 0.0, 0.0)))
    images = torch.rand(3, 1, 4, 4, generator=gen(20)) * 0.5
    params = augment.sample(3, CPU, gen(21))
    params["brightness"] = torch.tensor([0.5, 1.0, 1.5])
    out = augment.apply(images, params)
    torch.testing.assert_close(out, images * torch.tensor([0.5, 1.0, 1.5]).view(3, 1, 1, 1))
