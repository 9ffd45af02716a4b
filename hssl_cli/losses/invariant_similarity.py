"""A group-invariant similarity of lifted embeddings (Mukuta & Harada; our design).

Embeddings ``[N, |G|, D]`` carry a group axis on which ``rho(g)`` acts by a permutation.
``s(a, b) = pool_g cos(vec(a), vec(rho(g) b))`` pools over the orbit of ``b``; since
``{rho(g) rho(h) : g in G} = rho(G)``, transforming either argument by any element
leaves ``s`` unchanged. Used inside NT-Xent
(:func:`hssl_cli.losses.ntxent.nt_xent_from_similarity`), it makes the invariant
contrastive loss; with the trivial group it is the cosine similarity.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from hssl_cli.losses.precision import at_least_fp32


def group_invariant_similarity(
    first: torch.Tensor,
    second: torch.Tensor,
    fiber_permutations: torch.Tensor,
    pooling: Literal["max", "logsumexp"] = "max",
    pooling_temperature: float = 0.1,
) -> torch.Tensor:
    """``[N, |G|, D]`` x ``[M, |G|, D]`` -> ``[N, M]``: ``pool_g cos(vec(a), vec(rho(g) b))``.

    ``fiber_permutations[g]`` lists source indices: ``(rho(g) b)[i] = b[perm[g][i]]``
    (:attr:`hssl_cli.groups.Group.fiber_permutations`). ``logsumexp`` pooling is
    ``pooling_temperature * logsumexp(. / pooling_temperature)``, a smooth max.
    """
    first = F.normalize(at_least_fp32(first).flatten(1), dim=1)
    second = F.normalize(at_least_fp32(second).flatten(1), dim=1).view_as(second)
    per_element = torch.stack(
        [first @ second[:, permutation].flatten(1).T for permutation in fiber_permutations]
    )  # [|G|, N, M]
    if pooling == "max":
        return per_element.amax(0)
    return pooling_temperature * torch.logsumexp(per_element / pooling_temperature, dim=0)
