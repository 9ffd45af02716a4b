"""NT-Xent against a slow reference loop and known values (Chen et al. 2020, eq. 1)."""

import math

import pytest
import torch
import torch.nn.functional as F

from hssl_cli.losses import nt_xent, pair_accuracy


def reference_nt_xent(views: list[torch.Tensor], temperature: float) -> float:
    """Chen et al.'s eq. 1 written as loops: anchors (i, a), positives (i, b != a)."""
    z = [F.normalize(v, dim=1) for v in views]
    batch, count = len(z[0]), len(z)
    total, terms = 0.0, 0
    for i in range(batch):
        for a in range(count):
            denominator = sum(
                math.exp(float(z[a][i] @ z[c][j]) / temperature)
                for j in range(batch)
                for c in range(count)
                if (j, c) != (i, a)
            )
            positives = [
                math.log(math.exp(float(z[a][i] @ z[b][i]) / temperature) / denominator)
                for b in range(count)
                if b != a
            ]
            total -= sum(positives) / len(positives)
            terms += 1
    return total / terms


@pytest.mark.parametrize("views", [2, 3])
@pytest.mark.parametrize("temperature", [0.1, 0.5])
def test_matches_reference_loop(views: int, temperature: float) -> None:
    torch.manual_seed(views)
    batch = 5
    embeddings = [torch.randn(batch, 7, dtype=torch.float64) for _ in range(views)]
    ids = torch.arange(batch).repeat(views)
    loss = nt_xent(torch.cat(embeddings), ids, temperature)
    assert loss.item() == pytest.approx(reference_nt_xent(embeddings, temperature), rel=1e-9)


def test_known_value_for_aligned_positives_and_orthogonal_negatives() -> None:
    batch, temperature = 4, 0.5
    basis = torch.eye(batch)
    embeddings = torch.cat([basis, basis])
    loss = nt_xent(embeddings, torch.arange(batch).repeat(2), temperature)
    positive = math.exp(1 / temperature)
    expected = -math.log(positive / (positive + (2 * batch - 2) * math.exp(0.0)))
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_swapped_positives_raise_the_loss_and_scale_does_not_matter() -> None:
    torch.manual_seed(0)
    a = torch.randn(8, 16)
    ids = torch.arange(8).repeat(2)
    aligned = nt_xent(torch.cat([a, a + 0.01 * torch.randn_like(a)]), ids, 0.5)
    shuffled = nt_xent(torch.cat([a, a.roll(1, 0)]), ids, 0.5)
    assert aligned < shuffled
    assert nt_xent(torch.cat([a, 3 * a]), ids, 0.5) == pytest.approx(
        nt_xent(torch.cat([a, a]), ids, 0.5).item()
    )


def test_random_embeddings_sit_near_log_of_candidates() -> None:
    torch.manual_seed(0)
    batch = 64
    loss = nt_xent(torch.randn(2 * batch, 4096), torch.arange(batch).repeat(2), 1.0)
    assert loss.item() == pytest.approx(math.log(2 * batch - 1), rel=0.02)


def test_a_sample_without_positive_is_rejected() -> None:
    with pytest.raises(ValueError, match="two views"):
        nt_xent(torch.randn(3, 4), torch.tensor([0, 0, 1]), 0.5)


def test_pair_accuracy() -> None:
    a = torch.eye(4)
    ids = torch.arange(4).repeat(2)
    assert pair_accuracy(torch.cat([a, a]), ids).item() == 1.0
    assert pair_accuracy(torch.cat([a, a.roll(1, 0)]), ids).item() == 0.0
