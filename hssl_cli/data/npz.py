"""Arrays in a NumPy ``.npz`` file: ``x`` (uint8 [N, H, W] or [N, H, W, C]) and ``y`` (int [N]).

Files are opened with ``allow_pickle=False``: an npz can carry pickled objects, and loading
those runs arbitrary code.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hssl_cli.data._common import check_split, image_set, stratified_split
from hssl_cli.data.image_set import ImageSet
from hssl_cli.errors import HsslUserError, one_line

if TYPE_CHECKING:
    from hssl_cli.config import DataConfig

_EXPECTED = "keys x (uint8 [N,H,W] or [N,H,W,C], C=1 or 3) and y (integer labels [N])"


def load_npz(config: DataConfig, split: str) -> ImageSet:
    """Use ``test_path`` for the test split when given, else a stratified split with seed 0 so
    the test set does not move with the recipe seed. With two files, the one not loaded is
    checked too (its labels read, its images' header), so a bad ``test_path`` fails at
    pretrain, not at the probe an hour later."""
    check_split(split)
    if config.path is None:
        raise HsslUserError(f"npz needs data.path: set it to a .npz file with {_EXPECTED}")
    train_file = Path(config.path).expanduser()
    test_file = Path(config.test_path).expanduser() if config.test_path is not None else None

    if test_file is None:
        x, y = _read(train_file)
        keep = stratified_split(y, config.test_fraction, split, str(train_file))
        num_classes = int(y.max()) + 1  # from all labels, so both splits agree
        x, y = x[keep], y[keep]
    else:
        x, y = _read(train_file if split == "train" else test_file)
        other = _read_other(test_file if split == "train" else train_file, x.shape)
        num_classes = int(max(y.max(), other.max())) + 1
    return image_set(
        np.ascontiguousarray(x), y, num_classes, f"npz/{split}", channels_last=x.ndim == 4
    )


def _open(path: Path) -> np.lib.npyio.NpzFile:
    if not path.is_file():
        raise HsslUserError(
            f"npz file {path} not found: point data.path/test_path at a .npz with {_EXPECTED}"
        )
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise HsslUserError(
            f"{path} is not a readable .npz ({one_line(err)}): save it with "
            f"numpy.savez holding {_EXPECTED}"
        ) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise HsslUserError(
            f"{path} holds a single array, not an .npz archive: save it with "
            f"numpy.savez(path, x=..., y=...) holding {_EXPECTED}"
        )
    missing = [key for key in ("x", "y") if key not in archive.files]
    if missing:
        archive.close()
        raise HsslUserError(
            f"{path} lacks key(s) {', '.join(missing)} (has "
            f"{', '.join(archive.files) or 'none'}): it needs {_EXPECTED}"
        )
    return archive


def _get(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> np.ndarray:
    try:
        return archive[key]
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as err:
        raise HsslUserError(
            f"{path}: array {key} is unreadable ({one_line(err)}); it must be a "
            f"plain (non-object) array, as the file needs {_EXPECTED}"
        ) from None


def _array_header(archive: np.lib.npyio.NpzFile, key: str, path: Path) -> tuple:
    """``(shape, dtype)`` of an array from its ``.npy`` header alone: no data is read."""
    try:
        with archive.zip.open(f"{key}.npy") as member:
            version = np.lib.format.read_magic(member)
            read_header = {
                (1, 0): np.lib.format.read_array_header_1_0,
                (2, 0): np.lib.format.read_array_header_2_0,
            }.get(version)
            if read_header is None:
                raise ValueError(f"npy format version {version}")
            shape, _, dtype = read_header(member)
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as err:
        raise HsslUserError(
            f"{path}: array {key} is unreadable ({one_line(err, 120)}); the file needs {_EXPECTED}"
        ) from None
    return shape, dtype


def _check_images(shape: tuple, dtype: np.dtype, path: Path) -> None:
    if dtype.hasobject:
        raise HsslUserError(
            f"{path}: x is an object array (pickled Python objects, never loaded); "
            f"the file needs {_EXPECTED}"
        )
    if dtype != np.uint8:
        raise HsslUserError(
            f"{path}: x is {dtype}, not uint8: convert it (x.astype(numpy.uint8) "
            f"of values 0..255); the file needs {_EXPECTED}"
        )
    if len(shape) not in (3, 4) or (len(shape) == 4 and shape[3] not in (1, 3)) or shape[0] == 0:
        raise HsslUserError(f"{path}: x has shape {shape}; the file needs {_EXPECTED}")


def _read_other(path: Path, shape: tuple) -> np.ndarray:
    """The labels of the file not being loaded, after checking its images' header against
    the loaded images' ``shape`` (the same number of channels)."""
    with _open(path) as archive:
        other_shape, dtype = _array_header(archive, "x", path)
        _check_images(other_shape, dtype, path)
        labels = _check_labels(_get(archive, "y", path), other_shape[0], path)
    channels = [1 if len(s) == 3 else s[3] for s in (shape, other_shape)]
    if channels[0] != channels[1]:
        raise HsslUserError(
            f"{path}: x has {channels[1]} channel(s) but the other file of data.path/test_path "
            f"has {channels[0]}; both need the same"
        )
    return labels


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with _open(path) as archive:
        shape, dtype = _array_header(archive, "x", path)
        _check_images(shape, dtype, path)  # before loading: an object array is never touched
        x = _get(archive, "x", path)
        y = _get(archive, "y", path)
    _check_images(x.shape, x.dtype, path)
    return x, _check_labels(y, x.shape[0], path)


def _check_labels(y: np.ndarray, count: int | None, path: Path) -> np.ndarray:
    if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1 or y.size == 0:
        raise HsslUserError(f"{path}: y is {y.dtype} {y.shape}; the file needs {_EXPECTED}")
    if count is not None and y.shape[0] != count:
        raise HsslUserError(
            f"{path}: y has {y.shape[0]} labels for {count} images in x; the file needs {_EXPECTED}"
        )
    if y.min() < 0:
        raise HsslUserError(f"{path}: y has negative labels; use class indices 0..K-1")
    return y.astype(np.int64)
