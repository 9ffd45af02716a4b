"""Frozen-feature evaluation: linear probe and weighted kNN (docs: linear probe and kNN).

Features are extracted once, in eval mode and without augmentation, and cached
in memory; the linear classifier is then fit on the cached features with
full-batch L-BFGS (the "closed form / L-BFGS on cached features" protocol), so
a probe costs one pass over the data plus seconds.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from hssl_cli.config import ProbeConfig
from hssl_cli.data.image_set import ImageSet
from hssl_cli.models.backbone import Backbone
from hssl_cli.progress import progress_bar
from hssl_cli.runtime import inference, to_device

if TYPE_CHECKING:
    from hssl_cli.data.batches import BatchSource

FEATURE_KINDS = ("invariant", "full")


@dataclass
class Features:
    invariant: torch.Tensor  # [N, C]
    full: torch.Tensor  # [N, C*|G|]
    labels: torch.Tensor  # [N]


def extract_features(
    backbone: Backbone,
    images: ImageSet | BatchSource,
    device: torch.device,
    batch_size: int,
    quiet: bool = True,
    label: str = "features",
    precision: str = "fp32",
) -> Features:
    """One pass in eval mode under ``torch.inference_mode``, autocast in ``precision``
    (fp32, bf16 or fp16); the model's state is left as it was.

    Features come back as fp32 CPU tensors that autograd may use (the probe's classifier
    trains on them). On CUDA, batches go up from pinned memory and features come down into
    pinned buffers without blocking; the device is waited for once, at the end. A
    :class:`~hssl_cli.data.batches.BatchSource` streams a split that does not fit in memory.
    """
    from hssl_cli.data.batches import BatchSource, InMemoryBatches

    if not isinstance(images, BatchSource):
        images = InMemoryBatches(images, batch_size, torch.device("cpu"))
    was_training = backbone.training
    backbone.eval()  # outside inference mode: escnn caches its filters here
    total = len(images)
    cuda = device.type == "cuda"
    invariant: torch.Tensor | None = None
    full: torch.Tensor | None = None
    try:
        with progress_bar(quiet) as progress, inference(device, precision):
            task = progress.add_task(label, total=total, status="")
            start = 0
            for stored, _ in images.ordered(batch_size):
                batch = to_device(stored, device)
                output = backbone(batch.float().div_(255))
                if invariant is None or full is None:
                    invariant = _host_buffer(total, output.invariant, cuda)
                    full = _host_buffer(total, output.full, cuda)
                end = start + len(batch)
                # fp32 on the device first, so the copy down is a plain one
                invariant[start:end].copy_(output.invariant.float(), non_blocking=cuda)
                full[start:end].copy_(output.full.float(), non_blocking=cuda)
                progress.update(task, advance=len(batch))
                start = end
        if cuda:
            torch.cuda.synchronize(device)
    finally:
        backbone.train(was_training)
    if invariant is None or full is None:  # no images: nothing to size the features by
        raise ValueError(f"{label}: the data set has no images")
    return Features(invariant, full, images.labels.clone())


def _host_buffer(rows: int, like: torch.Tensor, pinned: bool) -> torch.Tensor:
    """An fp32 CPU tensor for ``rows`` rows shaped like ``like``'s; a normal tensor even
    inside inference mode, so autograd may read it later."""
    with torch.inference_mode(False):
        shape = (rows, *like.shape[1:])
        return torch.empty(shape, dtype=torch.float32, pin_memory=pinned)


def topk_accuracy(scores: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    k = min(k, scores.shape[1])
    hits = (scores.topk(k, dim=1).indices == labels[:, None]).any(1)
    return 100.0 * hits.float().mean().item()


def fit_linear_classifier(
    train: torch.Tensor, labels: torch.Tensor, num_classes: int, config: ProbeConfig
) -> torch.nn.Linear:
    """Multinomial logistic regression by full-batch L-BFGS on standardised features."""
    classifier = torch.nn.Linear(train.shape[1], num_classes)
    with (
        torch.no_grad()
    ):  # convex problem: a zero start is deterministic and leaves global RNG alone
        classifier.weight.zero_()
        classifier.bias.zero_()
    optimizer = torch.optim.LBFGS(
        classifier.parameters(),
        lr=1.0,
        max_iter=config.steps,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        loss = F.cross_entropy(classifier(train), labels)
        loss = loss + config.weight_decay * classifier.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return classifier


def linear_probe_scores(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    num_classes: int,
    config: ProbeConfig,
) -> torch.Tensor:
    """The fitted linear classifier's class scores ``[N_test, classes]`` on ``test``."""
    mean, std = train.mean(0), train.std(0).clamp_min(1e-6)
    classifier = fit_linear_classifier((train - mean) / std, train_labels, num_classes, config)
    with torch.no_grad():
        return classifier((test - mean) / std)


def linear_probe(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    config: ProbeConfig,
) -> dict[str, float]:
    scores = linear_probe_scores(train, train_labels, test, num_classes, config)
    return {
        "top1": topk_accuracy(scores, test_labels, 1),
        "top5": topk_accuracy(scores, test_labels, 5),
    }


def confusion_matrix(
    labels: torch.Tensor, predictions: torch.Tensor, num_classes: int
) -> torch.Tensor:
    """Counts ``[true class, predicted class]`` as int64."""
    pairs = labels.long() * num_classes + predictions.long()
    return torch.bincount(pairs, minlength=num_classes**2).view(num_classes, num_classes)


@torch.no_grad()
def knn_accuracy(
    train: torch.Tensor,
    train_labels: torch.Tensor,
    test: torch.Tensor,
    test_labels: torch.Tensor,
    num_classes: int,
    k: int,
    temperature: float,
    chunk: int = 1024,
) -> dict[str, float]:
    """Weighted cosine kNN (Wu et al. 2018): votes ``exp(sim / t)`` from the ``k`` nearest."""
    train_n = F.normalize(train, dim=1)
    k = min(k, len(train_labels))
    scores = []
    for start in range(0, len(test), chunk):
        similarity = F.normalize(test[start : start + chunk], dim=1) @ train_n.T
        top, index = similarity.topk(k, dim=1)
        votes = torch.zeros(len(top), num_classes)
        weights = ((top - top[:, :1]) / temperature).exp()  # row max first: no overflow
        votes.scatter_add_(1, train_labels[index], weights)
        scores.append(votes)
    votes = torch.cat(scores)
    return {
        "knn_top1": topk_accuracy(votes, test_labels, 1),
        "knn_top5": topk_accuracy(votes, test_labels, 5),
    }


@dataclass
class FeatureScores:
    """Linear and kNN accuracy per feature kind, and the linear probe's test predictions
    (what a confusion matrix needs, without fitting the classifier twice)."""

    metrics: dict[str, dict[str, float]]
    predictions: dict[str, torch.Tensor]  # per kind: [N_test] predicted classes


def score_features(
    train: Features, test: Features, num_classes: int, config: ProbeConfig
) -> FeatureScores:
    """Linear and kNN accuracy for invariant and full (structured) features."""
    metrics, predictions = {}, {}
    for kind in FEATURE_KINDS:
        train_x, test_x = getattr(train, kind), getattr(test, kind)
        scores = linear_probe_scores(train_x, train.labels, test_x, num_classes, config)
        predictions[kind] = scores.argmax(1)
        metrics[kind] = {
            "top1": topk_accuracy(scores, test.labels, 1),
            "top5": topk_accuracy(scores, test.labels, 5),
            **knn_accuracy(
                train_x,
                train.labels,
                test_x,
                test.labels,
                num_classes,
                config.knn_k,
                config.knn_temperature,
            ),
        }
    return FeatureScores(metrics, predictions)


def evaluate_features(
    train: Features, test: Features, num_classes: int, config: ProbeConfig
) -> dict[str, dict[str, float]]:
    """Linear and kNN accuracy for invariant and full (structured) features."""
    return score_features(train, test, num_classes, config).metrics
