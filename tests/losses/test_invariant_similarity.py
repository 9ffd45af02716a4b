"""The group-invariant similarity against a reference loop; NT-Xent from a similarity."""

import pytest
import torch
import torch.nn.functional as F

from hssl_cli.groups import get_group
from hssl_cli.losses import group_invariant_similarity, nt_xent, nt_xent_from_similarity


def reference_similarity(a: torch.Tensor, b: torch.Tensor, group_name: str) -> torch.Tensor:
    """``max_g cos(vec(a_i), vec(rho(g) b_j))`` as loops over pairs and elements."""
    group = get_group(group_name)
    out = torch.empty(len(a), len(b), dtype=a.dtype)
    for i in range(len(a)):
        for j in range(len(b)):
            out[i, j] = max(
                F.cosine_similarity(
                    a[i].flatten(), group.act_on_fibers(b[j], g, axis=0).flatten(), dim=0
                )
                for g in range(group.order)
            )
    return out


@pytest.mark.parametrize("group_name", ["rot4", "rot4flip"])
def test_similarity_matches_a_reference_loop(group_name: str) -> None:
    torch.manual_seed(0)
    order = get_group(group_name).order
    a, b = (
        torch.randn(3, order, 5, dtype=torch.float64),
        torch.randn(4, order, 5, dtype=torch.float64),
    )
    permutations = torch.tensor(get_group(group_name).fiber_permutations)
    fast = group_invariant_similarity(a, b, permutations)
    assert torch.allclose(fast, reference_similarity(a, b, group_name))
    smooth = group_invariant_similarity(a, b, permutations, "logsumexp", 1e-3)
    assert torch.allclose(smooth, fast, atol=1e-2)
    assert (group_invariant_similarity(a, b, permutations, "logsumexp", 0.5) >= fast).all()


def test_similarity_based_nt_xent_is_nt_xent_on_cosine() -> None:
    torch.manual_seed(0)
    z = torch.randn(8, 6, dtype=torch.float64)
    ids = torch.arange(4).repeat(2)
    cosine = F.normalize(z, dim=1) @ F.normalize(z, dim=1).T
    assert torch.allclose(nt_xent_from_similarity(cosine, ids, 0.5), nt_xent(z, ids, 0.5))
