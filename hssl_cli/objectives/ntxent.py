"""NT-Xent (InfoNCE) with any number of positives per sample.

With two views per sample it is SimCLR's loss (Chen et al. 2020, METHODS §1):
``-(1/2N) sum_i sum_{a != b} log exp(s(z_i^a, z_i^b)/tau)
/ sum_{(j,c) != (i,a)} exp(s(z_i^a, z_j^c)/tau)``.
With more views, each anchor averages the log-probability of all its positives,
as SupCon does; H-SSL uses that to read every fiber as a view (METHODS §2).

Example::

    z = torch.randn(2 * batch, 128)
    sample_ids = torch.arange(batch).repeat(2)
    loss = nt_xent(z, sample_ids, temperature=0.5)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def nt_xent(embeddings: torch.Tensor, sample_ids: torch.Tensor, temperature: float) -> torch.Tensor:
    """Mean over anchors of the NT-Xent loss; rows with equal ``sample_ids`` are positives."""
    normalized = F.normalize(embeddings, dim=1)
    logits = normalized @ normalized.T / temperature
    self_mask = torch.eye(len(embeddings), dtype=torch.bool, device=embeddings.device)
    logits = logits.masked_fill(self_mask, float("-inf"))
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = (sample_ids[:, None] == sample_ids[None, :]) & ~self_mask
    positive_count = positives.sum(1)
    if bool((positive_count == 0).any()):
        raise ValueError("every sample needs at least two views for NT-Xent")
    positive_log_prob = log_prob.masked_fill(~positives, 0.0).sum(1) / positive_count
    return -positive_log_prob.mean()


def pair_accuracy(embeddings: torch.Tensor, sample_ids: torch.Tensor) -> torch.Tensor:
    """Share of anchors whose most similar other row is a positive (a training health signal)."""
    normalized = F.normalize(embeddings.detach(), dim=1)
    similarity = normalized @ normalized.T
    similarity.fill_diagonal_(float("-inf"))
    nearest = similarity.argmax(1)
    return (sample_ids[nearest] == sample_ids).float().mean()
