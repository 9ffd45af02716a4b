"""Probe a checkpoint: rebuild its model, extract features once, score them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hssl_cli.checkpoint import load_backbone, read_checkpoint
from hssl_cli.errors import HsslUserError


def probe_checkpoint(
    path: Path, overrides: list[str], device: torch.device, quiet: bool
) -> dict[str, Any]:
    """Fit on the recipe's train split, score on its test split (``--set data.*`` to change)."""
    from hssl_cli.data import load_images
    from hssl_cli.evaluation import evaluate_features, extract_features

    checkpoint = read_checkpoint(path, overrides)
    recipe = checkpoint.recipe
    backbone = load_backbone(checkpoint, str(path)).to(device)
    train_set = load_images(recipe.data, "train")
    test_set = load_images(recipe.data, "test")
    if list(train_set.images.shape[1:]) != checkpoint.input_shape:
        raise HsslUserError(
            f"the probe data's images are {list(train_set.images.shape[1:])} but the model was "
            f"trained on {checkpoint.input_shape}; set data.image_size to match"
        )
    size = recipe.probe.batch_size
    train = extract_features(backbone, train_set, device, size, quiet, "train features")
    test = extract_features(backbone, test_set, device, size, quiet, "test features")
    results = evaluate_features(train, test, train_set.num_classes, recipe.probe)
    return {
        "checkpoint": str(path),
        "dataset": recipe.data.name,
        "epoch": checkpoint.epoch,
        "method": recipe.method.name,
        "group": recipe.model.group,
        "structure": recipe.model.structure,
        "train_size": len(train_set.labels),
        "test_size": len(test_set.labels),
        **results["invariant"],
        "invariant": results["invariant"],
        "full": results["full"],
    }
