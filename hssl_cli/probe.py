"""Probe a checkpoint: rebuild its model, extract features once, score them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hssl_cli.checkpoint import load_backbone, read_checkpoint
from hssl_cli.errors import HsslUserError


def probe_checkpoint(
    path: Path, overrides: list[str], device: torch.device, quiet: bool, precision: str = "auto"
) -> dict[str, Any]:
    """Fit on the recipe's train split, score on its test split (``--set data.*`` to change).

    Features are extracted in ``precision`` (``--precision``: see
    :func:`hssl_cli.runtime.inference_precision`) and scored in fp32.
    """
    from hssl_cli.data.batches import open_batches
    from hssl_cli.evaluation import evaluate_features, extract_features
    from hssl_cli.runtime import check_precision, inference_precision

    checkpoint = read_checkpoint(path, overrides)
    recipe = checkpoint.recipe
    chosen = inference_precision(precision, recipe.train.precision, device)
    check_precision(device, chosen, "--precision")
    backbone = load_backbone(checkpoint, str(path)).to(device)
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
    train = extract_features(backbone, train_set, device, size, quiet, "train features", chosen)
    test = extract_features(backbone, test_set, device, size, quiet, "test features", chosen)
    results = evaluate_features(train, test, train_set.num_classes, recipe.probe)
    return {
        "checkpoint": str(path),
        "dataset": recipe.data.name,
        "epoch": checkpoint.epoch,
        "method": recipe.method.name,
        "group": recipe.model.group,
        "structure": recipe.model.structure,
        "train_size": len(train_set),
        "test_size": len(test_set),
        **results["invariant"],
        "invariant": results["invariant"],
        "full": results["full"],
    }
