"""E-SSL pretext tasks: each label is the transformation it names (Wang et al. 2024)."""

import itertools

import pytest
import torch

from hssl_cli.augment import LUMA_WEIGHTS
from hssl_cli.objectives import PRETEXT_TASKS, pretext_task
from hssl_cli.objectives.pretext_tasks import (
    BLUR_SIGMAS,
    JIGSAW_PERMUTATIONS,
)


def images(channels: int = 3, side: int = 16, batch: int = 5) -> torch.Tensor:
    torch.manual_seed(channels * 100 + side)
    return torch.rand(batch, channels, side, side)


def apply_one(task: str, x: torch.Tensor, label: int) -> torch.Tensor:
    return pretext_task(task).apply(x, torch.full((x.shape[0],), label))


def total_variation(x: torch.Tensor) -> float:
    return float((x.diff(dim=2).abs().mean() + x.diff(dim=3).abs().mean()) / 2)


@pytest.mark.parametrize("task", sorted(PRETEXT_TASKS))
def test_label_zero_is_the_identity_and_shapes_and_range_are_kept(task: str) -> None:
    x = images()
    assert torch.equal(apply_one(task, x, 0), x)
    labels = torch.arange(x.shape[0]) % pretext_task(task).num_classes
    out = pretext_task(task).apply(x, labels)
    assert out.shape == x.shape
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("task", sorted(set(PRETEXT_TASKS) - {"none"}))
def test_every_label_gives_a_different_image_on_rgb(task: str) -> None:
    x = images(batch=1)
    outputs = [apply_one(task, x, k) for k in range(pretext_task(task).num_classes)]
    for a, b in itertools.combinations(outputs, 2):
        assert not torch.allclose(a, b)


def test_every_registry_entry_is_the_task_it_names() -> None:
    assert {name: pretext_task(name).name for name in PRETEXT_TASKS} == {
        name: name for name in PRETEXT_TASKS
    }


def test_mixed_labels_transform_each_image_by_its_own_label() -> None:
    x = images(batch=8)
    labels = torch.tensor([0, 1, 2, 3, 3, 2, 1, 0])
    out = pretext_task("rotation4").apply(x, labels)
    for b, k in enumerate(labels.tolist()):
        assert torch.equal(out[b], torch.rot90(x[b], k, dims=(1, 2)))


@pytest.mark.parametrize("k", range(4))
def test_rotation_label_k_is_rot90_by_k(k: int) -> None:
    x = images()
    assert torch.equal(apply_one("rotation4", x, k), torch.rot90(x, k, dims=(2, 3)))


def test_flips_and_inversion() -> None:
    x = images()
    assert torch.equal(apply_one("hflip", x, 1), x.flip(3))
    assert torch.equal(apply_one("vflip", x, 1), x.flip(2))
    assert torch.equal(apply_one("invert", x, 1), 1 - x)


def test_grayscale_is_luma_on_rgb_and_the_identity_on_one_channel() -> None:
    x = images()
    grey = apply_one("grayscale", x, 1)
    expected = sum(w * x[:, c] for c, w in enumerate(LUMA_WEIGHTS))
    for channel in range(3):
        assert torch.allclose(grey[:, channel], expected, atol=1e-6)
    single = images(channels=1)
    # Both classes are the same image: the task cannot be learned on 1-channel data.
    assert torch.equal(apply_one("grayscale", single, 1), single)


@pytest.mark.parametrize("label", [0, 1, 7, 13, 23])
def test_jigsaw_moves_tiles_as_the_labels_permutation_says(label: int) -> None:
    x = images(side=8)
    out = apply_one("jigsaw4", x, label)
    corners = [(0, 0), (0, 4), (4, 0), (4, 4)]  # row-major tile positions

    def tile(t: torch.Tensor, position: int) -> torch.Tensor:
        top, left = corners[position]
        return t[:, :, top : top + 4, left : left + 4]

    for position, source in enumerate(JIGSAW_PERMUTATIONS[label]):
        assert torch.equal(tile(out, position), tile(x, source))


def test_jigsaw_has_all_24_permutations_and_rejects_odd_sides() -> None:
    assert sorted(JIGSAW_PERMUTATIONS) == sorted(itertools.permutations(range(4)))
    with pytest.raises(ValueError, match="even"):
        apply_one("jigsaw4", images(side=7), 1)


def test_rotation_rejects_non_square_images() -> None:
    with pytest.raises(ValueError, match="square"):
        apply_one("rotation4", torch.rand(2, 1, 8, 6), 1)


def test_blur_levels_are_monotone_in_smoothness_and_keep_flat_images() -> None:
    x = images(side=32)
    variation = [total_variation(apply_one("blur4", x, k)) for k in range(len(BLUR_SIGMAS))]
    assert all(a > b for a, b in itertools.pairwise(variation))
    flat = torch.full((2, 3, 16, 16), 0.3)
    assert torch.allclose(apply_one("blur4", flat, 3), flat, atol=1e-6)


def test_labels_must_match_the_batch() -> None:
    with pytest.raises(ValueError, match="one label per image"):
        pretext_task("hflip").apply(images(batch=3), torch.zeros(2, dtype=torch.long))
