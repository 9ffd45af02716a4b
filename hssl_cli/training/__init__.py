"""The training engine: recipe in, checkpoints and metrics out.

``loop`` runs the epochs, ``schedule`` builds the optimiser (weight-decay groups) and the
learning-rate schedule, ``state`` checks, restores and saves a run for ``--resume``,
``metrics`` makes the epoch's record and the progress text, and ``run_log`` writes the
records (``metrics.jsonl``, TensorBoard).
"""

from hssl_cli.training.loop import TrainResult, pretrain, select_device
from hssl_cli.training.schedule import (
    learning_rate,
    make_optimizer,
    parameter_groups,
    trainable_parameters,
)

__all__ = [
    "TrainResult",
    "learning_rate",
    "make_optimizer",
    "parameter_groups",
    "pretrain",
    "select_device",
    "trainable_parameters",
]
