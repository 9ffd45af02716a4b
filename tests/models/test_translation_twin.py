"""The translation group's structure-removed twin: a trivial-group model, unstructured,
reads its map with positions in a fixed random order."""

import torch

from hssl_cli.models import build_backbone
from hssl_cli.recipe import validate_recipe
from hssl_cli.structured import scramble_positions


def tiny(structure: str):
    recipe = validate_recipe(
        {
            "model": {"group": "trivial", "widths": [3, 4], "structure": structure},
            "method": {"name": "hssl", "fibers": "translation"},
        }
    )
    torch.manual_seed(0)
    return build_backbone(recipe.model, 1).eval()


def test_scrambling_is_a_fixed_permutation_of_positions() -> None:
    maps = torch.arange(2 * 3 * 4 * 5.0).view(2, 3, 4, 5)
    once, again = scramble_positions(maps), scramble_positions(maps.clone())
    assert torch.equal(once, again)  # the same order every call
    assert not torch.equal(once, maps)
    assert torch.equal(once.flatten(2).sort(2).values, maps.flatten(2))  # only moved
    # Every channel and sample moves the same way.
    order = once[0, 0].flatten().long()
    assert torch.equal(once[1, 2].flatten(), maps[1, 2].flatten()[order])


def test_twin_keeps_pooled_features_and_breaks_translation() -> None:
    model, twin = tiny("equivariant"), tiny("unstructured")
    assert not model.scrambled_positions and twin.scrambled_positions
    images = torch.zeros(1, 1, 16, 16)
    images[..., 4:8, 4:8] = 1.0
    shifted = images.roll(2, dims=3)  # 2 pixels right: one position of the 8x8 map
    with torch.no_grad():
        plain, scrambled = model(images), twin(images)
        torch.testing.assert_close(plain.invariant, scrambled.invariant)  # same weights
        plain_moved = model(shifted).feature_map[..., 0, :, :]
        scrambled_moved = twin(shifted).feature_map[..., 0, :, :]
    # The plain map moves by one position; the scrambled map does not.
    torch.testing.assert_close(plain_moved[..., 1:], plain.feature_map[..., 0, :, :-1])
    torch.testing.assert_close(scrambled_moved, scramble_positions(plain_moved))
    assert not torch.allclose(scrambled_moved[..., 1:], scrambled.feature_map[..., 0, :, :-1])
