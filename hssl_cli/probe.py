"""Probe a checkpoint: rebuild its model, extract features once, score them.

With a baseline, the random-init encoder of the same architecture (what ``train.epochs=0``
saves for the checkpoint's recipe) is scored on the same data in the same way, so the
report says what pretraining bought.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from hssl_cli.checkpoint import load_backbone, read_checkpoint
from hssl_cli.errors import HsslUserError
from hssl_cli.evaluation import FEATURE_KINDS

if TYPE_CHECKING:
    from hssl_cli.config import Recipe
    from hssl_cli.models.backbone import Backbone


@dataclass
class EncoderScores:
    """One encoder's probe: accuracies per feature kind, and what the pictures need."""

    metrics: dict[str, dict[str, float]]  # {"invariant": {"top1": ...}, "full": {...}}
    test_invariant: torch.Tensor  # [N_test, C] invariant features of the test split
    test_predictions: torch.Tensor  # [N_test] the linear probe's classes (invariant features)


@dataclass
class ProbeRun:
    report: dict[str, Any]  # what --json prints
    num_classes: int
    test_labels: torch.Tensor  # [N_test]
    trained: EncoderScores
    random_init: EncoderScores | None  # with baseline=True


def random_init_backbone(recipe: Recipe, trained: Backbone) -> Backbone:
    """The encoder a ``train.epochs=0`` run of ``recipe`` saves: the model built right after
    seeding with ``recipe.seed`` (as pretrain does), normalised with the trained model's
    input statistics (the training split's, which that run computes the same way).

    The global random state is restored afterwards: probing draws nothing else from it.
    """
    import random

    from hssl_cli.models import build_backbone
    from hssl_cli.training.loop import seed_everything

    python_state = random.getstate()
    with torch.random.fork_rng(devices=[]):
        seed_everything(recipe.seed)
        backbone = build_backbone(recipe.model, trained.in_channels)
    random.setstate(python_state)
    backbone.input_mean.copy_(trained.input_mean)
    backbone.input_std.copy_(trained.input_std)
    return backbone.eval()


def gain(trained: dict[str, dict[str, float]], baseline: dict[str, dict[str, float]]) -> dict:
    """Trained minus random init, per feature kind and metric (accuracy points)."""
    return {
        kind: {metric: trained[kind][metric] - baseline[kind][metric] for metric in trained[kind]}
        for kind in FEATURE_KINDS
    }


def run_probe(
    path: Path,
    overrides: list[str],
    device: torch.device,
    quiet: bool,
    precision: str = "auto",
    baseline: bool = False,
) -> ProbeRun:
    """Fit on the recipe's train split, score on its test split (``--set data.*`` to change);
    with ``baseline``, do the same for :func:`random_init_backbone` on the same batches.

    Features are extracted in ``precision`` (``--precision``: see
    :func:`hssl_cli.runtime.inference_precision`) and scored in fp32.
    """
    from hssl_cli.data.batches import open_batches
    from hssl_cli.evaluation import extract_features, score_features
    from hssl_cli.runtime import check_precision, inference_precision

    checkpoint = read_checkpoint(path, overrides)
    recipe = checkpoint.recipe
    chosen = inference_precision(precision, recipe.train.precision, device)
    check_precision(device, chosen, "--precision")
    backbone = load_backbone(checkpoint, str(path))
    encoders = {"trained": backbone}
    if baseline:
        encoders["random init"] = random_init_backbone(recipe, backbone)
    size, cpu = recipe.probe.batch_size, torch.device("cpu")
    # Streamed or in memory as data.in_memory says; an in-memory split stays on the CPU and
    # only its batches go to the device (pinned, when streamed to CUDA).
    train_set = open_batches(recipe.data, "train", size, device, storage=cpu)
    test_set = open_batches(recipe.data, "test", size, device, storage=cpu)
    if list(train_set.image_shape) != checkpoint.input_shape:
        raise HsslUserError(
            f"the probe data's images are {list(train_set.image_shape)} but the model was "
            f"trained on {checkpoint.input_shape}; set data.image_size to match"
        )
    scored: dict[str, EncoderScores] = {}
    for name, encoder in encoders.items():
        encoder.to(device)
        suffix = "" if len(encoders) == 1 else f" ({name})"
        train = extract_features(
            encoder, train_set, device, size, quiet, "train features" + suffix, chosen
        )
        test = extract_features(
            encoder, test_set, device, size, quiet, "test features" + suffix, chosen
        )
        scores = score_features(train, test, train_set.num_classes, recipe.probe)
        scored[name] = EncoderScores(
            scores.metrics, test.invariant, scores.predictions["invariant"]
        )
        encoder.to(cpu)  # one encoder on the device at a time
    trained, random_init = scored["trained"], scored.get("random init")
    report = {
        "checkpoint": str(path),
        "dataset": recipe.data.name,
        "epoch": checkpoint.epoch,
        "method": recipe.method.name,
        "group": recipe.model.group,
        "structure": recipe.model.structure,
        "train_size": len(train_set),
        "test_size": len(test_set),
        **trained.metrics["invariant"],
        "invariant": trained.metrics["invariant"],
        "full": trained.metrics["full"],
    }
    if random_init is not None:
        report["random_init"] = random_init.metrics
        report["gain"] = gain(trained.metrics, random_init.metrics)
    labels = test_set.labels.cpu()
    return ProbeRun(report, train_set.num_classes, labels, trained, random_init)


def probe_checkpoint(
    path: Path, overrides: list[str], device: torch.device, quiet: bool, precision: str = "auto"
) -> dict[str, Any]:
    """:func:`run_probe`'s report (the trained encoder alone)."""
    return run_probe(path, overrides, device, quiet, precision).report


def probe_title(report: dict[str, Any]) -> str:
    """One line naming what a probe report scored (its table's and plot's title)."""
    title = f"{report['dataset']} probe of {report['checkpoint']} (epoch {report['epoch']})"
    return title + (" against its random init" if "random_init" in report else "")
