"""VICReg's loss against a slow reference loop and known values."""

import math

import pytest
import torch

from hssl_cli.losses import vicreg_loss


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
