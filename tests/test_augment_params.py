"""Parameter vectors of augmentations (EquiMod, Devillers & Lefort 2023) and their options."""

import pytest
import torch
import torchvision.transforms.functional as TF

from hssl_cli.augment import (
    BaseAugmentation,
    ExtendedAugmentConfig,
    brightness_contrast,
    colour_jitter,
    colour_jitter_in_order,
    gaussian_blur,
    solarize,
)
from hssl_cli.augment_params import (
    ParameterStandardiser,
    ParametrisedAugmentation,
    parameter_layout,
    params_to_vector,
)
from hssl_cli.config import AugmentConfig

CPU = torch.device("cpu")
EVERYTHING = ExtendedAugmentConfig(
    jitter_p=0.8, grayscale=0.2, jitter_order="random", blur=0.5, solarize=0.2
)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def parametrised(config: ExtendedAugmentConfig, channels: int) -> ParametrisedAugmentation:
    return ParametrisedAugmentation(config, parameter_layout([config]), channels)


def test_layout_has_15_values_for_simclr_and_18_for_byol() -> None:
    simclr = parameter_layout([ExtendedAugmentConfig()])
    assert len(simclr) == 15
    assert parameter_layout([AugmentConfig()]) == simclr
    byol_first = ExtendedAugmentConfig(blur=1.0)
    byol_second = ExtendedAugmentConfig(blur=0.1, solarize=0.2)
    byol = parameter_layout([byol_first, byol_second])
    assert len(byol) == 18
    assert byol[:15] == simclr
    assert byol[15:] == ("blur_on", "blur_sigma", "solarize_on")
    assert len(parameter_layout([byol_first])) == 17


@pytest.mark.parametrize("channels", [1, 3])
def test_reapplying_the_vector_reproduces_the_images_exactly(channels: int) -> None:
    augment = parametrised(EVERYTHING, channels)
    images = torch.rand(32, channels, 16, 16, generator=gen(1))
    augmented, vector = augment(images, gen(2))
    assert vector.shape == (32, 18)
    assert not torch.equal(augmented, images)
    assert torch.equal(augment.apply_vector(images, vector.clone()), augmented)


@pytest.mark.parametrize("channels", [1, 3])
def test_destandardised_vector_reproduces_the_images_exactly(channels: int) -> None:
    augment = parametrised(EVERYTHING, channels)
    standardise = ParameterStandardiser.measure([augment], samples=4096)
    images = torch.rand(32, channels, 16, 16, generator=gen(3))
    augmented, vector = augment(images, gen(4))
    standardised = standardise(vector.double())
    raw = standardise.destandardise(standardised).float()
    assert torch.equal(raw, vector)
    assert torch.equal(augment.apply_vector(images, raw), augmented)


@pytest.mark.parametrize("channels", [1, 3])
def test_standardised_vectors_have_zero_mean_and_unit_std(channels: int) -> None:
    augment = parametrised(EVERYTHING, channels)
    standardise = ParameterStandardiser.measure([augment])
    fresh = standardise(augment.sample_vector(1 << 16, CPU, gen(5)))
    mean, std = fresh.mean(0), fresh.std(0)
    varying = std > 0
    assert mean.abs().max() < 0.02
    assert (std[varying] - 1).abs().max() < 0.02
    constant = [augment.layout[i] for i in range(len(std)) if not varying[i]]
    # On single-channel images saturation, hue and grayscale do nothing: neutral constants.
    assert constant == ([] if channels == 3 else ["saturation", "hue", "gray"])
    assert torch.equal(fresh[:, ~varying], torch.zeros_like(fresh[:, ~varying]))


def test_constant_columns_standardise_to_zero() -> None:
    fixed = ExtendedAugmentConfig(hflip=0.0, jitter_order="fixed")
    augment = parametrised(fixed, 3)
    standardised = ParameterStandardiser.measure([augment], samples=1024)(
        augment.sample_vector(64, CPU, gen(6))
    )
    for name in ("flip", "jitter_step_0", "jitter_step_1", "jitter_step_2", "jitter_step_3"):
        column = standardised[:, augment.layout.index(name)]
        assert torch.equal(column, torch.zeros_like(column)), name


def test_vector_columns_hold_the_sampled_values_or_neutral_ones() -> None:
    config = ExtendedAugmentConfig(jitter_p=0.5, grayscale=0.5, jitter_order="random", blur=0.5)
    augmentation = BaseAugmentation(config)
    params = augmentation.sample(256, CPU, gen(7))
    layout = parameter_layout([config])
    vector = params_to_vector(params, layout, channels=3)
    column = {name: vector[:, i] for i, name in enumerate(layout)}
    on, off = params["jitter_on"] > 0, params["jitter_on"] == 0
    assert on.any() and off.any()
    torch.testing.assert_close(column["crop_top"], params["crop_y"] - params["crop_h"] / 2)
    torch.testing.assert_close(column["crop_left"], params["crop_x"] - params["crop_w"] / 2)
    assert torch.equal(column["crop_height"], params["crop_h"])
    assert torch.equal(column["crop_width"], params["crop_w"])
    assert torch.equal(column["brightness"][on], params["brightness"][on])
    assert torch.equal(column["hue"][on], params["hue"][on])
    order = torch.stack([column[f"jitter_step_{k}"] for k in range(4)], 1)
    assert torch.equal(order[on], params["jitter_order"][on].float())
    # Jitter off: the identity order and neutral factors, as EquiMod writes them.
    assert torch.equal(order[off], torch.arange(4.0).expand(int(off.sum()), 4))
    for name, neutral in (("brightness", 1), ("contrast", 1), ("saturation", 1), ("hue", 0)):
        assert (column[name][off] == neutral).all(), name
    blurred = params["blur_on"] > 0
    assert torch.equal(column["blur_sigma"][blurred], params["blur_sigma"][blurred])
    assert (column["blur_sigma"][~blurred] == 0).all()
    assert set(column["gray"].tolist()) == {0.0, 1.0}


def test_hand_written_vector_crops_and_flips() -> None:
    config = ExtendedAugmentConfig(jitter_p=0.0, grayscale=0.0)
    augment = parametrised(config, 1)
    layout = augment.layout
    images = torch.rand(1, 1, 8, 8, generator=gen(8))
    vector = torch.zeros(1, len(layout))
    neutral = {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0}
    values = {"crop_height": 0.5, "crop_width": 0.5, "flip": 1.0, **neutral}
    for name, value in values.items():
        vector[0, layout.index(name)] = value
    for step in range(4):
        vector[0, layout.index(f"jitter_step_{step}")] = step
    out = augment.apply_vector(images, vector)
    base = BaseAugmentation(config)
    params = base.sample(1, CPU, gen(9))
    params.update(crop_w=torch.tensor([0.5]), crop_h=torch.tensor([0.5]), flip=torch.ones(1))
    params.update(crop_x=torch.tensor([0.25]), crop_y=torch.tensor([0.25]))
    expected = base.apply(images, params)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("channels", [1, 3])
def test_random_jitter_order_matches_a_per_sample_reference(channels: int) -> None:
    config = ExtendedAugmentConfig(jitter_p=0.8, jitter_order="random")
    params = BaseAugmentation(config).sample(48, CPU, gen(10))
    images = torch.rand(48, channels, 8, 8, generator=gen(11))
    out = colour_jitter_in_order(images, params)
    # Reference: each sample runs the fixed pipeline's operations one by one, in its order.
    only = {
        0: {"brightness": None, "contrast": 1.0, "saturation": 1.0, "hue": 0.0},
        1: {"brightness": 1.0, "contrast": None, "saturation": 1.0, "hue": 0.0},
        2: {"brightness": 1.0, "contrast": 1.0, "saturation": None, "hue": 0.0},
        3: {"brightness": 1.0, "contrast": 1.0, "saturation": 1.0, "hue": None},
    }
    for b in range(48):
        sample = {key: value[b : b + 1] for key, value in params.items()}
        expected = images[b : b + 1]
        if sample["jitter_on"] > 0:
            for operation in sample["jitter_order"][0].tolist():
                factors = {
                    name: sample[name] if value is None else torch.tensor([value])
                    for name, value in only[operation].items()
                }
                if channels == 1 and operation >= 2:
                    continue
                step = {**sample, **factors, "jitter_on": torch.ones(1)}
                jitter = colour_jitter if channels == 3 else brightness_contrast
                expected = jitter(expected, step)
        torch.testing.assert_close(out[b : b + 1], expected, atol=1e-6, rtol=0)


@pytest.mark.parametrize("channels", [1, 3])
def test_identity_order_equals_the_fixed_pipeline_exactly(channels: int) -> None:
    params = BaseAugmentation(AugmentConfig(jitter_p=0.8)).sample(16, CPU, gen(12))
    params["jitter_order"] = torch.arange(4).expand(16, 4)
    images = torch.rand(16, channels, 8, 8, generator=gen(13))
    fixed = colour_jitter if channels == 3 else brightness_contrast
    assert torch.equal(colour_jitter_in_order(images, params), fixed(images, params))


def test_blur_matches_torchvision_per_sample() -> None:
    images = torch.rand(4, 3, 16, 16, generator=gen(14))
    sigma = torch.tensor([0.3, 0.8, 1.5, 2.0])
    on = torch.tensor([1.0, 1.0, 0.0, 1.0])
    out = gaussian_blur(images, sigma, kernel_size=5, on=on)
    for b in range(4):
        expected = images[b]
        if on[b] > 0:
            expected = TF.gaussian_blur(images[b], [5, 5], [float(sigma[b])] * 2)
        torch.testing.assert_close(out[b], expected, atol=1e-5, rtol=0)
    assert torch.equal(out[2], images[2])


def test_solarize_matches_torchvision() -> None:
    images = torch.rand(3, 3, 8, 8, generator=gen(15))
    out = solarize(images, torch.tensor([1.0, 0.0, 1.0]), threshold=0.5)
    assert torch.equal(out[0], TF.solarize(images[0], 0.5))
    assert torch.equal(out[1], images[1])
    assert torch.equal(out[2], TF.solarize(images[2], 0.5))


def test_extended_defaults_leave_the_base_pipeline_unchanged() -> None:
    images = torch.rand(8, 3, 12, 12, generator=gen(16))
    plain = BaseAugmentation(AugmentConfig())
    extended = BaseAugmentation(ExtendedAugmentConfig())
    plain_params = plain.sample(8, CPU, gen(17))
    assert plain_params.keys() == extended.sample(8, CPU, gen(17)).keys()
    assert torch.equal(plain(images, gen(18)), extended(images, gen(18)))


def nothing_but(**changes: object) -> dict[str, object]:
    """Every base augmentation off, except ``changes``."""
    none = {
        "crop_scale": (1.0, 1.0),
        "crop_ratio": (1.0, 1.0),
        "hflip": 0.0,
        "jitter_p": 0.0,
        "grayscale": 0.0,
    }
    return {**none, **changes}


def test_blur_and_solarize_are_applied_with_their_probabilities() -> None:
    config = ExtendedAugmentConfig(**nothing_but(blur=1.0, solarize=1.0, solarize_threshold=0.0))
    images = torch.rand(4, 1, 12, 12, generator=gen(19))
    out = BaseAugmentation(config)(images, gen(20))
    # Threshold 0 inverts every pixel after the blur: 1 - blur(x).
    blurred_back = 1 - out
    assert not torch.allclose(blurred_back, images, atol=1e-3)
    assert (blurred_back - images).mean().abs() < 0.02  # blurring keeps the mean
    assert blurred_back.std() < images.std()


def test_group_elements_are_refused() -> None:
    config = ExtendedAugmentConfig(group_element=True)
    with pytest.raises(ValueError, match="group_element"):
        ParametrisedAugmentation(config, parameter_layout([config]), 3)


@pytest.mark.parametrize(
    ("changes", "key"),
    [({"blur_sigma": (0.0, 1.0)}, "blur_sigma"), ({"blur_kernel_size": 4}, "blur_kernel_size")],
)
def test_extended_config_rejects_bad_values(changes: dict, key: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=key):
        ExtendedAugmentConfig(**changes)
