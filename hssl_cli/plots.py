"""Figures, drawn with matplotlib's file-only Agg backend (no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from hssl_cli.errors import HsslUserError, clip

if TYPE_CHECKING:
    from hssl_cli.probe import ProbeRun

FLOOR = 1e-9  # log axes cannot show an exact zero


def check_plot_path(path: str | Path, option: str = "--plot") -> Path:
    """A ``.png`` path that can be written (see :mod:`hssl_cli.output_paths`): checked
    before the work, so a typo costs nothing."""
    from hssl_cli.output_paths import check_output_file

    path = Path(path)
    if path.suffix.lower() != ".png":
        raise HsslUserError(f"{option} {clip(str(path))}: give a .png path")
    return check_output_file(path, option)


def plot_equivariance(report: dict[str, Any], path: Path, title: str) -> None:
    """Left: invariance error versus rotation angle. Right: per-layer error per group element."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (sweep_axis, layer_axis) = plt.subplots(1, 2, figsize=(12, 4.5))
    sweep = report.get("sweep") or {}
    if sweep.get("factors"):
        _plot_scale_sweep(sweep_axis, sweep, report)
    elif sweep.get("angles"):
        labels = {
            "model_invariant_err": f"model ({report['model_group']})",
            "trivial_group_invariant_err": "same architecture, trivial group (random init)",
        }
        for key, label in labels.items():
            if key in sweep:
                values = [max(v, FLOOR) for v in sweep[key]]
                sweep_axis.plot(sweep["angles"], values, marker="o", markersize=3, label=label)
        for angle in range(0, 361, 90):
            sweep_axis.axvline(angle, color="grey", linewidth=0.5, linestyle=":")
        sweep_axis.set_yscale("log")
        sweep_axis.legend()
    else:
        sweep_axis.text(
            0.5, 0.5, "no sweep (--angles)", ha="center", transform=sweep_axis.transAxes
        )
    if not sweep.get("factors"):
        sweep_axis.set_xlabel("rotation angle (degrees)")
        sweep_axis.set_ylabel("relative invariance error of pooled features")
        sweep_axis.set_title("continuous rotation sweep")

    layers = report["layers"]
    elements = [  # the identity is trivially exact: leave it out
        element
        for element in report["elements"][1:]
        if any(layer["rel_err"].get(element) is not None for layer in layers)
    ]
    width = 0.8 / max(1, len(elements))
    for offset, element in enumerate(elements):
        heights = [max(layer["rel_err"].get(element) or 0.0, FLOOR) for layer in layers]
        positions = [i + (offset - (len(elements) - 1) / 2) * width for i in range(len(layers))]
        layer_axis.bar(positions, heights, width=width, label=element)
    layer_axis.set_xticks(range(len(layers)), [layer["name"] for layer in layers], rotation=45)
    layer_axis.set_yscale("log")
    threshold = report["exact_threshold"]  # the measuring precision's rounding level
    layer_axis.axhline(
        threshold, color="black", linewidth=0.8, linestyle="--", label=f"{threshold:g}"
    )
    layer_axis.set_xlabel("layer")
    layer_axis.set_ylabel("relative equivariance error")
    layer_axis.set_title(f"per layer and element ({report['group']})")
    layer_axis.legend(fontsize="small", ncol=2)
    figure.suptitle(f"{title}\nverdict: {report['verdict']}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def _plot_scale_sweep(axis: Any, sweep: dict[str, Any], report: dict[str, Any]) -> None:
    """Fiber-shift error versus rescaling factor, model against its unstructured twin."""
    labels = {
        "model_fiber_shift_err": f"model ({report['model_group']})",
        "unstructured_fiber_shift_err": "unstructured twin (random init)",
    }
    for key, label in labels.items():
        if key in sweep:
            pairs = zip(sweep["factors"], sweep[key], strict=True)
            points = [(factor, max(err, FLOOR)) for factor, err in pairs if err is not None]
            xs, ys = [p[0] for p in points], [p[1] for p in points]
            axis.plot(xs, ys, marker="o", markersize=3, label=label)
    for element in report["elements"]:  # "x0.707": the group's own factors
        axis.axvline(float(element[1:]), color="grey", linewidth=0.5, linestyle=":")
    axis.set_yscale("log")
    axis.legend()
    axis.set_xlabel("rescaling factor")
    axis.set_ylabel("relative error against the (fractional) fiber shift")
    axis.set_title("continuous scale sweep")


TSNE_POINTS = 1000  # t-SNE costs O(N log N) per step: a fixed sample keeps it to seconds
LABELLED_CLASSES = 20  # more classes than this: no legend, no counts in the cells


def tsne_sample(count: int, limit: int = TSNE_POINTS, seed: int = 0) -> Any:
    """Sorted indices of at most ``limit`` of ``count`` points, the same for every encoder."""
    import numpy as np

    if count <= limit:
        return np.arange(count)
    return np.sort(np.random.default_rng(seed).choice(count, size=limit, replace=False))


def tsne_embedding(features: Any, seed: int = 0) -> Any:
    """2-D t-SNE (scikit-learn, PCA start, fixed seed) of ``[N, C]`` features."""
    import numpy as np
    from sklearn.manifold import TSNE

    features = np.asarray(features, dtype=np.float32)
    if len(features) < 3:  # t-SNE needs a perplexity below the number of points
        return np.zeros((len(features), 2))
    perplexity = min(30.0, (len(features) - 1) / 3)
    return TSNE(2, perplexity=perplexity, init="pca", random_state=seed).fit_transform(features)


def plot_probe(run: ProbeRun, path: Path, title: str, seed: int = 0) -> None:
    """Per encoder (trained, then random init when probed), a row: the linear probe's
    confusion matrix on invariant features (rows: true class, normalised), and a t-SNE of
    a sample of the test split's invariant features, coloured by class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from hssl_cli.evaluation import confusion_matrix

    encoders = {"trained": run.trained}
    if run.random_init is not None:
        encoders["random init"] = run.random_init
    classes = run.num_classes
    sample = tsne_sample(len(run.test_labels), seed=seed)
    labels = run.test_labels.numpy()[sample]
    colours = plt.get_cmap("tab10" if classes <= 10 else "tab20" if classes <= 20 else "turbo")
    figure, axes = plt.subplots(len(encoders), 2, figsize=(11, 4.8 * len(encoders)), squeeze=False)
    for (name, scores), (matrix_axis, tsne_axis) in zip(encoders.items(), axes, strict=True):
        counts = confusion_matrix(run.test_labels, scores.test_predictions, classes)
        rates = counts.float() / counts.sum(1, keepdim=True).clamp_min(1)
        image = matrix_axis.imshow(rates.numpy(), cmap="Blues", vmin=0, vmax=1)
        if classes <= LABELLED_CLASSES:
            for true in range(classes):
                for predicted in range(classes):
                    if counts[true, predicted]:
                        colour = "white" if rates[true, predicted] > 0.5 else "black"
                        matrix_axis.text(
                            predicted,
                            true,
                            int(counts[true, predicted]),
                            ha="center",
                            va="center",
                            fontsize="x-small",
                            color=colour,
                        )
            matrix_axis.set_xticks(range(classes))
            matrix_axis.set_yticks(range(classes))
        figure.colorbar(image, ax=matrix_axis, fraction=0.046, label="share of the true class")
        top1 = scores.metrics["invariant"]["top1"]
        matrix_axis.set_title(f"{name}: linear probe, invariant features (top-1 {top1:.1f}%)")
        matrix_axis.set_xlabel("predicted class")
        matrix_axis.set_ylabel("true class")

        points = tsne_embedding(scores.test_invariant.numpy()[sample], seed)
        scatter = tsne_axis.scatter(
            points[:, 0], points[:, 1], c=labels, cmap=colours, s=6, vmin=-0.5, vmax=classes - 0.5
        )
        if classes <= LABELLED_CLASSES:
            tsne_axis.legend(
                *scatter.legend_elements(num=list(range(classes))),
                title="class",
                fontsize="x-small",
                loc="center left",
                bbox_to_anchor=(1.0, 0.5),
            )
        tsne_axis.set_title(f"{name}: t-SNE of {len(sample)} test images' invariant features")
        tsne_axis.set_xticks([])
        tsne_axis.set_yticks([])
    figure.suptitle(title)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
