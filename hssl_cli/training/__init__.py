"""The training engine: recipe in, checkpoints and metrics out.

``loop`` runs the epochs, ``schedule`` builds the optimiser (weight-decay groups) and the
learning-rate schedule, ``state`` checks, restores and saves a run for ``--resume``, and
``metrics`` writes ``metrics.jsonl`` and the progress text.
"""

from hssl_cli.run_files import CHECKPOINT_NAME, METRICS_NAME, RECIPE_NAME, TRAIN_STATE_NAME
from hssl_cli.training.loop import TrainResult, pretrain, seed_everything, select_device
from hssl_cli.training.schedule import (
    learning_rate,
    make_optimizer,
    parameter_groups,
    trainable_parameters,
)
from hssl_cli.training.state import deferred_interrupt

__all__ = [
    "CHECKPOINT_NAME",
    "METRICS_NAME",
    "RECIPE_NAME",
    "TRAIN_STATE_NAME",
    "TrainResult",
    "deferred_interrupt",
    "learning_rate",
    "make_optimizer",
    "parameter_groups",
    "pretrain",
    "seed_everything",
    "select_device",
    "trainable_parameters",
]
