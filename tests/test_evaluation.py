"""Frozen-feature evaluation: top-k accuracy, linear probe, weighted kNN, feature extraction."""

import math

import pytest
import torch

from hssl_cli.config import ModelConfig, ProbeConfig
from hssl_cli.data import ImageSet
from hssl_cli.evaluation import (
    Features,
    confusion_matrix,
    evaluate_features,
    extract_features,
    knn_accuracy,
    linear_probe,
    score_features,
    topk_accuracy,
)
from hssl_cli.models import build_backbone

CLASSES = 6
PROBE = ProbeConfig(steps=20, knn_k=5, knn_temperature=0.1)


def blobs(per_class, seed, dim=10, spread=10.0):
    """Gaussian blobs around fixed, well-separated centres (the centres use seed 0)."""
    centres = torch.randn(CLASSES, dim, generator=torch.Generator().manual_seed(0)) * spread
    labels = torch.arange(CLASSES).repeat_interleave(per_class)
    noise = torch.randn(len(labels), dim, generator=torch.Generator().manual_seed(seed))
    return centres[labels] + noise, labels


def random_task(n, seed, dim=10):
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, dim, generator=generator), torch.randint(
        CLASSES, (n,), generator=generator
    )


def unit(angle):
    return [math.cos(angle), math.sin(angle)]


# ---------------------------------------------------------------- top-k


def test_topk_accuracy_exact_values():
    scores = torch.tensor(
        [
            [0.10, 0.50, 0.40],  # label 2: second
            [0.80, 0.15, 0.05],  # label 0: first
            [0.20, 0.30, 0.50],  # label 0: third
            [0.35, 0.40, 0.25],  # label 1: first
        ]
    )
    labels = torch.tensor([2, 0, 0, 1])
    assert topk_accuracy(scores, labels, 1) == 50.0
    assert topk_accuracy(scores, labels, 2) == 75.0
    assert topk_accuracy(scores, labels, 3) == 100.0
    assert topk_accuracy(scores, labels, 5) == 100.0  # k larger than the class count is clipped


def test_topk_accuracy_all_wrong():
    scores = torch.eye(4)
    assert topk_accuracy(scores, torch.tensor([1, 2, 3, 0]), 1) == 0.0


# ---------------------------------------------------------------- linear probe


def test_linear_probe_separates_blobs():
    train, train_labels = blobs(30, seed=1)
    test, test_labels = blobs(10, seed=2)
    result = linear_probe(train, train_labels, test, test_labels, CLASSES, PROBE)
    assert set(result) == {"top1", "top5"}
    assert result["top1"] >= 99.0
    assert result["top5"] == 100.0


def test_linear_probe_on_random_labels_is_near_chance():
    train, train_labels = random_task(600, seed=3)
    test, test_labels = random_task(600, seed=4)
    result = linear_probe(train, train_labels, test, test_labels, CLASSES, PROBE)
    assert 100 / CLASSES - 10 < result["top1"] < 100 / CLASSES + 10
    assert 500 / CLASSES - 10 < result["top5"] < 500 / CLASSES + 10


def test_linear_probe_matches_scikit_learn_on_digits():
    """Same standardised pixels, same split, same objective: sklearn's ``C * sum(CE) +
    |W|^2 / 2`` is the probe's ``mean(CE) + weight_decay * |W|^2`` for ``C = 1 / (2 n wd)``."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression

    digits = load_digits()
    pixels = torch.tensor(digits.data, dtype=torch.float32)
    labels = torch.tensor(digits.target)
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(0))
    train_idx, test_idx = order[:300], order[300:800]
    train, test = pixels[train_idx], pixels[test_idx]
    varying = train.std(0) > 0  # a few border pixels are always blank
    mean, std = train[:, varying].mean(0), train[:, varying].std(0)
    train, test = (train[:, varying] - mean) / std, (test[:, varying] - mean) / std
    config = ProbeConfig()

    ours = linear_probe(train, labels[train_idx], test, labels[test_idx], 10, config)["top1"]
    reference = LogisticRegression(C=1 / (2 * len(train) * config.weight_decay), max_iter=5000)
    reference.fit(train.numpy(), labels[train_idx].numpy())
    theirs = 100 * (reference.predict(test.numpy()) == labels[test_idx].numpy()).mean()
    assert theirs > 90  # a real task: far from chance (10) and from trivially perfect
    assert abs(ours - theirs) <= 1.0


def test_linear_probe_is_reproducible():
    train, train_labels = random_task(100, seed=5)
    args = (train, train_labels, train, train_labels, CLASSES, PROBE)
    assert linear_probe(*args) == linear_probe(*args)


# ---------------------------------------------------------------- kNN


def test_knn_on_separated_clusters_is_perfect():
    train, train_labels = blobs(20, seed=6)
    test, test_labels = blobs(10, seed=7)
    result = knn_accuracy(train, train_labels, test, test_labels, CLASSES, k=5, temperature=0.1)
    assert result == {"knn_top1": 100.0, "knn_top5": 100.0}


def test_knn_chunks_agree_with_one_pass():
    train, train_labels = random_task(50, seed=8)
    test, test_labels = random_task(30, seed=9)
    args = (train, train_labels, test, test_labels, CLASSES, 7, 0.2)
    assert knn_accuracy(*args, chunk=4) == knn_accuracy(*args)


def test_knn_weighting_beats_the_majority():
    # Two very close neighbours of class 0, three farther ones of class 1, one far class 2.
    train = torch.tensor([unit(0.1), unit(-0.1), unit(1.0), unit(-1.0), unit(1.1), unit(math.pi)])
    labels = torch.tensor([0, 0, 1, 1, 1, 2])
    query, truth = torch.tensor([unit(0.0)]), torch.tensor([0])
    weighted = knn_accuracy(train, labels, query, truth, 3, k=5, temperature=0.05)
    assert weighted["knn_top1"] == 100.0
    # A huge temperature makes every vote ~1: the majority (class 1) wins.
    flat = knn_accuracy(train, labels, query, truth, 3, k=5, temperature=100.0)
    assert flat["knn_top1"] == 0.0
    assert flat["knn_top5"] == 100.0
    # With k=6 the class-2 point votes too, but only with weight exp(-1/t).
    assert knn_accuracy(train, labels, query, truth, 3, k=6, temperature=0.05)["knn_top1"] == 100


def test_knn_k_larger_than_train_set():
    train = torch.tensor([unit(0.0), unit(2.0)])
    labels = torch.tensor([1, 0])
    result = knn_accuracy(train, labels, torch.tensor([unit(0.2)]), torch.tensor([1]), 2, 200, 0.1)
    assert result["knn_top1"] == 100.0


def test_knn_small_temperature_does_not_overflow():
    train = torch.tensor([unit(0.3), unit(0.0)])
    labels = torch.tensor([0, 1])
    result = knn_accuracy(train, labels, torch.tensor([unit(0.0)]), torch.tensor([1]), 2, 2, 0.01)
    assert result["knn_top1"] == 100.0


# ---------------------------------------------------------------- evaluate_features


def test_evaluate_features_reports_both_kinds():
    train_x, train_labels = blobs(20, seed=10)
    test_x, test_labels = blobs(5, seed=11)
    train = Features(train_x[:, :4], train_x, train_labels)
    test = Features(test_x[:, :4], test_x, test_labels)
    results = evaluate_features(train, test, CLASSES, PROBE)
    assert set(results) == {"invariant", "full"}
    for kind in results.values():
        assert set(kind) == {"top1", "top5", "knn_top1", "knn_top5"}
    assert results["full"]["top1"] >= 99.0
    assert results["full"]["knn_top1"] == 100.0


def test_score_features_predictions_are_the_probes_own() -> None:
    """The predictions behind a confusion matrix give the reported top-1 exactly."""
    train_x, train_labels = random_task(60, seed=12)
    test_x, test_labels = random_task(30, seed=13)
    train = Features(train_x[:, :4], train_x, train_labels)
    test = Features(test_x[:, :4], test_x, test_labels)
    scored = score_features(train, test, CLASSES, PROBE)
    assert scored.metrics == evaluate_features(train, test, CLASSES, PROBE)
    for kind, predictions in scored.predictions.items():
        hits = (predictions == test_labels).float().mean().item() * 100
        assert hits == pytest.approx(scored.metrics[kind]["top1"])
        assert 0 < scored.metrics[kind]["top1"] < 100  # a noisy task: not trivially all right


def test_confusion_matrix_counts_true_by_predicted() -> None:
    labels = torch.tensor([0, 0, 1, 2, 2, 2])
    predictions = torch.tensor([0, 1, 1, 2, 0, 2])
    expected = torch.tensor([[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    assert torch.equal(confusion_matrix(labels, predictions, 3), expected)


# ---------------------------------------------------------------- feature extraction


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    net = build_backbone(ModelConfig(group="rot4", widths=[2, 4]), 1)
    with torch.no_grad():  # move BatchNorm statistics off their defaults
        net(torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(1)))
    return net


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(2)
    return ImageSet(
        images=torch.randint(0, 256, (5, 1, 8, 8), dtype=torch.uint8, generator=generator),
        labels=torch.tensor([0, 1, 2, 1, 0]),
        num_classes=3,
        name="tiny/train",
    )


@pytest.mark.parametrize("training", [True, False])
def test_extract_features_shapes_and_mode(backbone, images, training):
    backbone.train(training)
    features = extract_features(backbone, images, torch.device("cpu"), batch_size=2)
    assert backbone.training is training
    assert features.invariant.shape == (5, 4)
    assert features.full.shape == (5, 4 * 4)
    assert features.invariant.dtype == features.full.dtype == torch.float32
    assert torch.equal(features.labels, images.labels)
    assert features.labels is not images.labels
    backbone.train()


def test_extract_features_match_eval_forward_on_scaled_images(backbone, images):
    features = extract_features(backbone, images, torch.device("cpu"), batch_size=3)
    backbone.eval()
    try:
        with torch.no_grad():
            expected = backbone(images.images.float() / 255)
    finally:
        backbone.train()
    torch.testing.assert_close(features.full, expected.full, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(features.invariant, expected.invariant, atol=1e-6, rtol=1e-5)
    # Invariant features are the group max-pool of the fibers.
    fibers = features.full.view(5, 4, 4)
    torch.testing.assert_close(features.invariant, fibers.amax(2))


def test_extract_features_full_is_permuted_by_rotation_invariant_is_not(backbone, images):
    group = backbone.group
    rotated = ImageSet(
        torch.rot90(images.images, 1, (2, 3)), images.labels, images.num_classes, images.name
    )
    device = torch.device("cpu")
    plain = extract_features(backbone, images, device, batch_size=5)
    turned = extract_features(backbone, rotated, device, batch_size=5)
    torch.testing.assert_close(turned.invariant, plain.invariant, atol=1e-5, rtol=1e-4)
    expected = group.act_on_fibers(plain.full.view(5, 4, 4), 1).flatten(1)
    torch.testing.assert_close(turned.full, expected, atol=1e-5, rtol=1e-4)


def test_extract_features_in_inference_mode_equal_no_grad_and_serve_autograd(backbone, images):
    """inference_mode changes nothing in fp32 on the CPU: the same batches under no_grad give
    the same bits; the features are ordinary tensors the probe's classifier can train on."""
    features = extract_features(backbone, images, torch.device("cpu"), batch_size=2)
    backbone.eval()
    try:
        with torch.no_grad():
            outputs = [backbone(images.images[i : i + 2].float() / 255) for i in range(0, 5, 2)]
    finally:
        backbone.train()
    assert torch.equal(features.invariant, torch.cat([o.invariant for o in outputs]))
    assert torch.equal(features.full, torch.cat([o.full for o in outputs]))
    for tensor in (features.invariant, features.full):
        assert not tensor.is_inference() and not tensor.requires_grad
    weight = torch.zeros(features.full.shape[1], 3, requires_grad=True)
    (features.full @ weight).sum().backward()  # would fail on an inference tensor
    assert weight.grad is not None


def test_extract_features_rejects_unknown_precision(backbone, images):
    from hssl_cli.errors import HsslUserError

    with pytest.raises(HsslUserError, match="unknown precision 'half'"):
        extract_features(backbone, images, torch.device("cpu"), batch_size=2, precision="half")
    assert backbone.training  # mode restored
