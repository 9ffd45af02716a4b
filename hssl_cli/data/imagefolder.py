"""A user's own images: ``root/train/<class>/*.png`` and ``root/test/<class>/...``.

Images are decoded once into memory, so every file of a split must end at one size: either
``data.image_size`` or, when unset, the size of the first training image. Class indices come
from the sorted training folders so both splits agree on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from hssl_cli.data._common import check_split, image_set
from hssl_cli.data.image_set import ImageSet
from hssl_cli.errors import HsslUserError

if TYPE_CHECKING:
    from hssl_cli.config import DataConfig

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_GRAY_MODES = frozenset({"1", "L", "LA"})
_LAYOUT = "root/train/<class>/*.png (or .jpg, .jpeg, .bmp) and root/test/<class>/..."


@dataclass
class _Layout:
    """What a header-only pass over both splits learns before any pixel is decoded."""

    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> (file, label), only splits that exist
    channels: int
    size: tuple[int, int] | None  # (width, height) every image shares, when image_size is unset


def load_imagefolder(config: DataConfig, split: str) -> ImageSet:
    """Decode one split into uint8 [N, C, H, W]; grayscale stays 1 channel only if all images
    (of both splits) are grayscale, so train and test always share a shape."""
    from PIL import Image

    check_split(split)
    layout = _scan(config, split)
    files = layout.files[split]
    mode = "L" if layout.channels == 1 else "RGB"
    if config.image_size is not None:
        width = height = config.image_size
    else:
        assert layout.size is not None
        width, height = layout.size
    pixels = np.empty((len(files), height, width, layout.channels), dtype=np.uint8)
    labels = np.empty(len(files), dtype=np.int64)
    for index, (path, label) in enumerate(files):
        try:
            with Image.open(path) as image:
                converted = image.convert(mode)
                if converted.size != (width, height):
                    converted = converted.resize((width, height), Image.Resampling.BILINEAR)
                array = np.asarray(converted, dtype=np.uint8)
        except OSError as err:
            raise HsslUserError(_unreadable(path, err)) from None
        pixels[index] = array.reshape(height, width, layout.channels)
        labels[index] = label
    return image_set(
        pixels, labels, len(layout.classes), f"imagefolder/{split}", channels_last=True
    )


def _scan(config: DataConfig, split: str) -> _Layout:
    from PIL import Image

    if config.root is None:
        raise HsslUserError(
            f"imagefolder needs data.root: set it to a folder laid out as {_LAYOUT}"
        )
    root = Path(config.root).expanduser()
    train_dir = root / "train"
    if not train_dir.is_dir():
        raise HsslUserError(
            f"imagefolder: {train_dir} is not a folder: lay out {root} as {_LAYOUT}"
        )
    classes = sorted(
        p.name for p in train_dir.iterdir() if p.is_dir() and not p.name.startswith(".")
    )
    if not classes:
        raise HsslUserError(
            f"imagefolder: {train_dir} has no class folders: lay it out as {_LAYOUT}"
        )
    index = {name: i for i, name in enumerate(classes)}

    files: dict[str, list[tuple[Path, int]]] = {}
    for name in ("train", "test"):
        split_dir = root / name
        if not split_dir.is_dir():
            if name == split:
                raise HsslUserError(
                    f"imagefolder: {split_dir} is not a folder: lay out {root} as {_LAYOUT}"
                )
            continue
        files[name] = _list_split(split_dir, index)
    if not files[split]:
        raise HsslUserError(
            f"imagefolder: no .png/.jpg/.jpeg/.bmp images under {root / split}/<class>/: add some"
        )

    gray = True
    size: tuple[int, int] | None = None
    first: Path | None = None
    for name in ("train", "test"):
        for path, _ in files.get(name, []):
            try:
                with Image.open(path) as image:
                    image_mode, image_size = image.mode, image.size
            except OSError as err:
                raise HsslUserError(_unreadable(path, err)) from None
            gray = gray and image_mode in _GRAY_MODES
            if config.image_size is not None:
                continue
            if size is None:
                size, first = image_size, path
            elif image_size != size:
                raise HsslUserError(
                    f"imagefolder: {path} is {image_size[0]}x{image_size[1]} but {first} is "
                    f"{size[0]}x{size[1]}: set data.image_size to resize all images to one size"
                )
    return _Layout(classes=classes, files=files, channels=1 if gray else 3, size=size)


def _list_split(split_dir: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """Files sorted per class (recursively, like torchvision's ImageFolder) for a stable order."""
    files: list[tuple[Path, int]] = []
    for class_dir in sorted(p for p in split_dir.iterdir() if p.is_dir()):
        if class_dir.name.startswith("."):
            continue
        if class_dir.name not in index:
            raise HsslUserError(
                f"imagefolder: class folder {class_dir} has no counterpart in "
                f"{split_dir.parent / 'train'}: add it there (labels come from train) or remove it"
            )
        label = index[class_dir.name]
        files.extend(
            (path, label)
            for path in sorted(class_dir.rglob("*"))
            if path.suffix.lower() in EXTENSIONS and path.is_file()
        )
    return files


def _unreadable(path: Path, err: BaseException) -> str:
    reason = " ".join(str(err).split()) or type(err).__name__
    return f"imagefolder: cannot decode {path} ({reason}): replace or remove it"
