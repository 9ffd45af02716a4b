"""SSL losses as pure functions, one file each; objectives import them from here only."""

from hssl_cli.losses.byol import byol_loss, symmetric_byol_loss
from hssl_cli.losses.invariant_similarity import group_invariant_similarity
from hssl_cli.losses.ntxent import (
    cosine_similarity_matrix,
    nt_xent,
    nt_xent_from_similarity,
    pair_accuracy,
    pair_accuracy_from_similarity,
)
from hssl_cli.losses.vicreg import vicreg_loss

__all__ = [
    "byol_loss",
    "cosine_similarity_matrix",
    "group_invariant_similarity",
    "nt_xent",
    "nt_xent_from_similarity",
    "pair_accuracy",
    "pair_accuracy_from_similarity",
    "symmetric_byol_loss",
    "vicreg_loss",
]
