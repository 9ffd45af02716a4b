"""Figure helpers: the t-SNE sample stays small, fixed and shared between encoders."""

import numpy as np

from hssl_cli.plots import TSNE_POINTS, tsne_sample


def test_tsne_sample_is_bounded_seeded_and_sorted() -> None:
    sample = tsne_sample(25_000)
    assert len(sample) == TSNE_POINTS == len(set(sample.tolist()))
    assert np.array_equal(sample, np.sort(sample)) and sample.max() < 25_000
    assert np.array_equal(sample, tsne_sample(25_000))
    assert not np.array_equal(sample, tsne_sample(25_000, seed=1))
    assert np.array_equal(tsne_sample(40), np.arange(40))  # small splits: every point
