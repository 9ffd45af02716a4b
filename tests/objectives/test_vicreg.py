"""VICReg against a slow reference loop and known values; VICReg as H-SSL's base loss."""

import math

import pytest
import torch

from hssl_cli.errors import HsslUserError
from hssl_cli.models import build_backbone
from hssl_cli.objectives import build_objective
from hssl_cli.objectives.vicreg import VicregConfig, vicreg_loss
from hssl_cli.recipe import ModelConfig, validate_recipe


def reference_terms(z: list[list[float]], eps: float) -> tuple[float, float]:
    """Variance hinge and covariance penalty of one branch, as loops over the batch."""
    batch, dim = len(z), len(z[0])
    means = [sum(z[i][j] for i in range(batch)) / batch for j in range(dim)]

    def covariance(j: int, k: int) -> float:
        return sum((z[i][j] - means[j]) * (z[i][k] - means[k]) for i in range(batch)) / (batch - 1)

    variance = sum(max(0.0, 1 - math.sqrt(covariance(j, j) + eps)) for j in range(dim)) / dim
    off_diagonal = sum(covariance(j, k) ** 2 for j in range(dim) for k in range(dim) if j != k)
    return variance, off_diagonal / dim


def reference_vicreg(a: torch.Tensor, b: torch.Tensor, weights: tuple[float, float, float]):
    """Bardes et al. 2022, eq. (6): lambda s + mu (v_a + v_b) + nu (c_a + c_b)."""
    eps = 1e-4
    rows_a, rows_b = a.tolist(), b.tolist()
    batch, dim = len(rows_a), len(rows_a[0])
    invariance = sum(
        (rows_a[i][j] - rows_b[i][j]) ** 2 for i in range(batch) for j in range(dim)
    ) / (batch * dim)
    variance_a, covariance_a = reference_terms(rows_a, eps)
    variance_b, covariance_b = reference_terms(rows_b, eps)
    variance, covariance = variance_a + variance_b, covariance_a + covariance_b
    loss = weights[0] * invariance + weights[1] * variance + weights[2] * covariance
    return {"loss": loss, "invariance": invariance, "variance": variance, "covariance": covariance}


@pytest.mark.parametrize("weights", [(25.0, 25.0, 1.0), (1.0, 2.0, 3.0)])
@pytest.mark.parametrize("scale", [0.3, 2.0])
def test_matches_reference_loop(weights: tuple[float, float, float], scale: float) -> None:
    torch.manual_seed(0)
    a = scale * torch.randn(6, 5, dtype=torch.float64)
    b = a + 0.5 * torch.randn(6, 5, dtype=torch.float64)
    terms = vicreg_loss(a, b, *weights)
    expected = reference_vicreg(a, b, weights)
    assert set(terms) == set(expected)
    for name, value in expected.items():
        assert terms[name].item() == pytest.approx(value, rel=1e-9, abs=1e-12), name


def hadamard_features(batch: int = 8, dim: int = 4) -> torch.Tensor:
    """Columns of a Hadamard matrix: zero mean, orthogonal, unbiased variance ``N/(N-1) > 1``."""
    hadamard = torch.ones(1, 1, dtype=torch.float64)
    while hadamard.shape[0] < batch:
        hadamard = torch.cat(
            [torch.cat([hadamard, hadamard], 1), torch.cat([hadamard, -hadamard], 1)]
        )
    return hadamard[:, 1 : dim + 1]  # skip the constant column


def test_identical_decorrelated_unit_spread_views_cost_nothing() -> None:
    z = hadamard_features()
    terms = vicreg_loss(z, z.clone())
    for name in ("loss", "invariance", "variance", "covariance"):
        assert terms[name].item() == pytest.approx(0.0, abs=1e-12), name


def test_collapsed_views_pay_the_full_variance_hinge() -> None:
    z = torch.ones(8, 4, dtype=torch.float64)
    terms = vicreg_loss(z, z, variance_weight=1.0)
    expected_hinge = 2 * (1 - math.sqrt(1e-4))  # both branches, every dimension at std sqrt(eps)
    assert terms["variance"].item() == pytest.approx(expected_hinge, rel=1e-12)
    assert terms["covariance"].item() == 0.0
    assert terms["loss"].item() == pytest.approx(expected_hinge, rel=1e-12)


def test_correlated_dimensions_pay_covariance_and_shifted_views_pay_invariance() -> None:
    z = hadamard_features()
    duplicated = torch.cat([z[:, :1], z[:, :1]], dim=1)  # two identical columns
    covariance = 8 / 7  # per branch: two off-diagonal entries squared, / dim 2
    assert vicreg_loss(duplicated, duplicated)["covariance"].item() == pytest.approx(
        2 * covariance**2
    )
    assert vicreg_loss(z, z + 0.5)["invariance"].item() == pytest.approx(0.25)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="one shape"):
        vicreg_loss(torch.randn(4, 3), torch.randn(4, 2))
    with pytest.raises(ValueError, match="two samples"):
        vicreg_loss(torch.randn(1, 3), torch.randn(1, 3))


@pytest.mark.parametrize("layers", [2, 3])
def test_objective_logs_its_terms_and_builds_the_expander(layers: int) -> None:
    torch.manual_seed(0)
    backbone = build_backbone(ModelConfig(group="rot4", widths=[2, 4]), 1)
    config = VicregConfig(projector_hidden_dim=16, projector_out_dim=8, expander_layers=layers)
    objective = build_objective(config, backbone)
    linears = [m for m in objective.expander if isinstance(m, torch.nn.Linear)]
    assert len(linears) == layers and linears[-1].out_features == 8
    values = objective(backbone, torch.rand(6, 1, 16, 16))
    assert set(values) == {"loss", "invariance", "variance", "covariance", "pair_acc"}
    weighted = 25 * values["invariance"] + 25 * values["variance"] + values["covariance"]
    assert values["loss"].item() == pytest.approx(weighted.item(), rel=1e-5)


HSSL_VICREG = {
    "model": {"group": "rot4", "widths": [2, 4]},
    "method": {
        "name": "hssl",
        "base_loss": "vicreg",
        "projector_hidden_dim": 16,
        "projector_out_dim": 8,
    },
}


@pytest.mark.parametrize("augment", [None, {"crop_scale": [0.5, 1.0]}])
def test_hssl_with_vicreg_base_loss_trains_one_step(augment: dict | None) -> None:
    method = {**HSSL_VICREG["method"], **({"augment": augment} if augment else {})}
    recipe = validate_recipe({**HSSL_VICREG, "method": method})
    torch.manual_seed(0)
    backbone = build_backbone(recipe.model, 1)
    objective = build_objective(recipe.method, backbone)
    values = objective(backbone, torch.rand(6, 1, 16, 16))
    assert {"loss", "invariance", "variance", "covariance", "pair_acc"} <= set(values)
    assert torch.isfinite(values["loss"])
    values["loss"].backward()
    parameters = [*backbone.parameters(), *objective.parameters()]
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in parameters)
    assert any(p.grad.abs().sum() > 0 for p in backbone.parameters())


def test_hssl_vicreg_rejects_all_fibers_positive() -> None:
    method = {**HSSL_VICREG["method"], "all_fibers_positive": True}
    with pytest.raises(HsslUserError, match="all_fibers_positive=false"):
        validate_recipe({**HSSL_VICREG, "method": method})
