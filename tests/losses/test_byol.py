"""BYOL's loss: known values, a reference loop, and no gradient to the target."""

import pytest
import torch

from hssl_cli.losses import byol_loss, symmetric_byol_loss


def test_byol_loss_known_values() -> None:
    x = torch.randn(5, 4)
    assert byol_loss(x, 3 * x).item() == pytest.approx(0.0, abs=1e-6)
    assert byol_loss(x, -x).item() == pytest.approx(4.0)
    orthogonal = torch.eye(4)
    assert byol_loss(orthogonal, orthogonal.roll(1, 0)).item() == pytest.approx(2.0)
    prediction, target = torch.randn(6, 4), torch.randn(6, 4)
    cosines = [
        float(prediction[i] @ target[i] / (prediction[i].norm() * target[i].norm()))
        for i in range(6)
    ]
    expected = sum(2 - 2 * c for c in cosines) / 6
    assert byol_loss(prediction, target).item() == pytest.approx(expected, rel=1e-5)


def test_byol_loss_sends_no_gradient_to_the_target() -> None:
    prediction = torch.randn(4, 3, requires_grad=True)
    target = torch.randn(4, 3, requires_grad=True)
    byol_loss(prediction, target).backward()
    assert prediction.grad is not None and target.grad is None


def test_symmetric_loss_matches_a_reference_loop() -> None:
    torch.manual_seed(0)
    predictions = (torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64))
    targets = (torch.randn(5, 3, dtype=torch.float64), torch.randn(5, 3, dtype=torch.float64))

    def one_way(p: torch.Tensor, z: torch.Tensor) -> float:
        total = 0.0
        for i in range(len(p)):
            unit_p, unit_z = p[i] / p[i].norm(), z[i] / z[i].norm()
            total += float(((unit_p - unit_z) ** 2).sum())  # = 2 - 2 cos
        return total / len(p)

    expected = one_way(predictions[0], targets[1]) + one_way(predictions[1], targets[0])
    assert symmetric_byol_loss(predictions, targets).item() == pytest.approx(expected, rel=1e-12)
