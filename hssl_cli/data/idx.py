"""MNIST-style IDX files read straight from a folder, gzipped or not.

Debian's ``dataset-fashion-mnist`` ships Fashion-MNIST as the four ``.gz`` IDX files in
/usr/share/datasets/fashion-mnist/, not in torchvision's ``FashionMNIST/raw`` layout, so
MNIST-style loaders accept such a folder as ``data.root`` directly.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from hssl_cli.data._common import check_split, image_set
from hssl_cli.data.image_set import ImageSet
from hssl_cli.errors import HsslUserError, one_line

# IDX type codes (third magic byte) -> big-endian numpy dtype.
_IDX_DTYPES: dict[int, str] = {
    0x08: ">u1",
    0x09: ">i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
_STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IDX_FILE_NAMES = tuple(stem for pair in _STEMS.values() for stem in pair)


def read_idx(path: Path) -> np.ndarray:
    """Parse an IDX file ourselves: the format is a 4-byte magic, big-endian uint32 dims, then
    the raw array, and checking each part turns a truncated download into a clear error."""
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except (OSError, EOFError, zlib.error) as err:
        raise HsslUserError(_corrupt(path, f"cannot be read ({one_line(err)})")) from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise HsslUserError(_corrupt(path, "has no IDX magic number"))
    ndim = raw[3]
    if ndim == 0:
        raise HsslUserError(_corrupt(path, "declares 0 dimensions"))
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise HsslUserError(_corrupt(path, "ends inside its header"))
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise HsslUserError(
            _corrupt(
                path, f"holds {len(raw) - header} data bytes but its header {dims} needs {expected}"
            )
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=True)


def find_idx_file(root: Path, stem: str) -> Path | None:
    """Plain files win over ``.gz`` ones: they load faster and are what torchvision extracts."""
    for candidate in (root / stem, root / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def is_idx_folder(root: Path) -> bool:
    """A folder holding any of the four standard IDX files is taken to be an IDX folder."""
    return root.is_dir() and any(find_idx_file(root, stem) is not None for stem in IDX_FILE_NAMES)


def load_idx_split(root: Path, split: str, dataset: str, num_classes: int = 10) -> ImageSet:
    """Load one split of an MNIST-style IDX folder, checking images and labels agree."""
    check_split(split)
    image_stem, label_stem = _STEMS[split]
    paths = []
    for stem in (image_stem, label_stem):
        found = find_idx_file(root, stem)
        if found is None:
            raise HsslUserError(
                f"{dataset}: {stem}[.gz] is missing from {root}: put the four IDX files "
                f"({', '.join(IDX_FILE_NAMES)}, gzipped or not) there"
            )
        paths.append(found)
    images, labels = read_idx(paths[0]), read_idx(paths[1])
    if images.ndim != 3 or images.dtype != np.uint8:
        raise HsslUserError(
            _corrupt(paths[0], f"holds {images.dtype} {images.shape}, not uint8 [N, H, W] images")
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise HsslUserError(
            _corrupt(
                paths[1],
                f"holds {labels.shape[0] if labels.ndim else 0} labels for "
                f"{images.shape[0]} images in {paths[0].name}",
            )
        )
    if not np.issubdtype(labels.dtype, np.integer) or (
        labels.size and (labels.min() < 0 or labels.max() >= num_classes)
    ):
        raise HsslUserError(_corrupt(paths[1], f"holds labels outside 0..{num_classes - 1}"))
    return image_set(images, labels, num_classes, f"{dataset}/{split}")


def _corrupt(path: Path, problem: str) -> str:
    return f"IDX file {path} {problem}: replace it with an intact copy"
