"""The equivariance metric on hand-made maps, and the inspection on real backbones."""

import pytest
import torch

from hssl_cli.config import ModelConfig
from hssl_cli.equivariance import (
    VERDICT_APPROXIMATE,
    VERDICT_EXACT,
    VERDICT_NOT,
    check_compatible,
    measure,
    parse_angles,
)
from hssl_cli.errors import HsslUserError
from hssl_cli.groups import get_group
from hssl_cli.models import build_backbone
from hssl_cli.models.backbone import Backbone


class PixelPermutationLift(Backbone):
    """``F_x[g] = T_g k(T_g^-1 x)`` with ``k = W * P``: a fixed random pixel permutation ``P``
    and a fixed weight map ``W`` (so the pooled fibers differ along the group axis).

    Lifting an arbitrary map this way is exactly equivariant for the regular
    representation; with ``lift=False`` (``F_x[g] = k(x)``) it is not.
    """

    def __init__(self, group_name: str, size: int, lift: bool) -> None:
        group = get_group(group_name)
        super().__init__(group, 1, 1, "mean")
        self.lift = lift
        generator = torch.Generator().manual_seed(0)
        self.permutation = torch.randperm(size * size, generator=generator)
        self.weights = torch.rand(size, size, generator=generator)

    def scramble(self, images: torch.Tensor) -> torch.Tensor:
        flat = images.flatten(2)[:, :, self.permutation]
        return flat.view_as(images) * self.weights

    def flat_feature_map(self, images: torch.Tensor) -> torch.Tensor:
        group = self.group
        fibers = []
        for g in range(group.order):
            if self.lift:
                inverse = group.inverse_table[g]
                fibers.append(
                    group.act_on_images(self.scramble(group.act_on_images(images, inverse)), g)
                )
            else:
                fibers.append(self.scramble(images))
        return torch.cat(fibers, dim=1)

    def stage_outputs(self, images: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
        return [("lift", self.flat_feature_map(self.normalize(images)))]


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
def test_exactly_equivariant_permutation_has_zero_error(group_name: str) -> None:
    images = torch.rand(3, 1, 6, 6)
    report = measure(
        PixelPermutationLift(group_name, 6, lift=True), images, get_group(group_name), []
    )
    errors = [e for layer in report.layers for e in layer["rel_err"].values()]
    assert max(errors) < 1e-6
    assert report.verdict == VERDICT_EXACT
    for element in report.elements:
        assert report.structured[element]["best_shift"] == element


def test_non_equivariant_map_is_caught() -> None:
    images = torch.rand(3, 1, 6, 6)
    report = measure(PixelPermutationLift("rot4", 6, lift=False), images, get_group("rot4"), [])
    assert report.layers[0]["rel_err"]["rot0"] == 0.0
    assert min(report.layers[0]["rel_err"][e] for e in ("rot90", "rot180", "rot270")) > 0.1
    assert report.verdict == VERDICT_NOT


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    torch.manual_seed(0)
    return torch.rand(4, 1, 16, 16)


def test_c4_cnn_exact_and_sweep_shape(images: torch.Tensor) -> None:
    model = build_backbone(ModelConfig(group="rot4", widths=[2, 3]), 1)
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    report = measure(model, images, get_group("rot4"), [0, 45, 90])
    assert model.training  # mode restored
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert report.verdict == VERDICT_EXACT
    assert [layer["name"] for layer in report.layers] == ["conv1", "pool1", "conv2"]
    assert report.sweep["angles"] == [0, 45, 90]
    assert report.sweep["model_invariant_err"][2] < 1e-5 < report.sweep["model_invariant_err"][1]
    assert "trivial_group_invariant_err" not in report.sweep  # no baseline given


def test_c8_is_approximate_not_failing(images: torch.Tensor) -> None:
    model = build_backbone(ModelConfig(group="rot8", widths=[2]), 1)
    report = measure(model, images, get_group("rot8"), [])
    assert report.layers[0]["rel_err"]["rot90"] < 1e-5
    assert report.layers[0]["rel_err"]["rot45"] > 1e-5
    assert report.verdict == VERDICT_APPROXIMATE


def test_finer_group_on_coarser_model_measures_only_what_the_fibers_carry(images) -> None:
    model = build_backbone(ModelConfig(group="rot4", widths=[2]), 1)
    report = measure(model, images, get_group("rot8"), [])
    assert report.layers[0]["rel_err"]["rot45"] is None
    assert report.layers[0]["rel_err"]["rot90"] < 1e-5
    assert report.structured["rot45"]["expected_shift_err"] is None
    assert report.structured["rot45"]["best_shift"] in {"rot0", "rot90"}


def test_incompatible_groups_are_user_errors() -> None:
    with pytest.raises(HsslUserError, match="no reflections"):
        check_compatible(get_group("rot4"), get_group("rot4flip"))
    with pytest.raises(HsslUserError, match="no group axis"):
        check_compatible(get_group("trivial"), get_group("rot4"))
    check_compatible(get_group("rot4flip"), get_group("flip"))


def test_parse_angles() -> None:
    assert parse_angles("0:90:30") == [0, 30, 60]
    assert parse_angles("0:360:15")[-1] == 345
    for bad, problem in [
        ("0:360", "is not START:STOP:STEP"),
        ("a:b:c", "is not START:STOP:STEP"),
        ("0:360:0", "need STOP > START and STEP > 0"),
        ("90:0:10", "need STOP > START and STEP > 0"),
        ("0:360:0.01", "asks for 36000 angles"),
    ]:
        with pytest.raises(HsslUserError, match=f"--angles '{bad}'.*{problem}"):
            parse_angles(bad)
