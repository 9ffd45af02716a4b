"""NT-Xent (InfoNCE) with any number of positives per sample.

With two views per sample it is SimCLR's loss (Chen et al. 2020, eq. 1):
``-(1/2N) sum_i sum_{a != b} log exp(s(z_i^a, z_i^b)/tau)
/ sum_{(j,c) != (i,a)} exp(s(z_i^a, z_j^c)/tau)``.
With more views, each anchor averages the log-probability of all its positives, as
SupCon does (Khosla et al. 2020, eq. 2 "out"); H-SSL uses that to read every fiber as a
view (Keller et al. 2023, sec. 3). The similarity ``s`` is cosine by default; the
invariant contrastive loss passes its own (:mod:`hssl_cli.losses.invariant_similarity`).

Example::

    z = torch.randn(2 * batch, 128)
    sample_ids = torch.arange(batch).repeat(2)
    loss = nt_xent(z, sample_ids, temperature=0.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from hssl_cli.distributed import gather_rows, gather_sample_ids
from hssl_cli.losses.precision import at_least_fp32


def cosine_similarity_matrix(embeddings: torch.Tensor) -> torch.Tensor:
    """``[N, D]`` -> ``[N, N]`` cosine similarities of every pair of rows."""
    normalized = F.normalize(embeddings, dim=1)
    return normalized @ normalized.T


def nt_xent_from_similarity(
    similarity: torch.Tensor, sample_ids: torch.Tensor, temperature: float
) -> torch.Tensor:
    """Mean over anchors of NT-Xent given all pairwise similarities; equal ids are positives.

    ``similarity`` is already the global one (see :func:`nt_xent` for the gather).
    """
    similarity = at_least_fp32(similarity)
    self_mask = torch.eye(len(similarity), dtype=torch.bool, device=similarity.device)
    logits = (similarity / temperature).masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (sample_ids[:, None] == sample_ids[None, :]) & ~self_mask
    positive_count = positives.sum(1)
    if bool((positive_count == 0).any()):
        raise ValueError("every sample needs at least two views for NT-Xent")
    positive_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1) / positive_count
    return -positive_log_prob.mean()


def nt_xent(embeddings: torch.Tensor, sample_ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """NT-Xent on the cosine similarity of ``embeddings`` ``[N, D]``.

    With several training processes the rows of every rank are gathered (with gradients)
    first, so each rank computes the loss of the global batch.
    """
    everyone = gather_rows(at_least_fp32(embeddings))
    return nt_xent_from_similarity(
        cosine_similarity_matrix(everyone), gather_sample_ids(sample_ids), temperature
    )


def pair_accuracy_from_similarity(
    similarity: torch.Tensor, sample_ids: torch.Tensor
) -> torch.Tensor:
    """Share of anchors whose most similar other row is a positive (a training health signal)."""
    others = similarity.detach().clone().fill_diagonal_(float("-inf"))
    return (sample_ids[others.argmax(1)] == sample_ids).float().mean()


def pair_accuracy(embeddings: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
    """:func:`pair_accuracy_from_similarity` on cosine similarities (global batch)."""
    everyone = gather_rows(at_least_fp32(embeddings.detach()))
    return pair_accuracy_from_similarity(
        cosine_similarity_matrix(everyone), gather_sample_ids(sample_ids)
    )
