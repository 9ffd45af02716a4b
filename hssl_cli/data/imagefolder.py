"""A user's own images: ``root/train/<class>/*.png`` and ``root/test/<class>/...``.

The test split may also be ``root/val/<class>/...`` (ImageNet's layout) when ``root/test`` is
absent, or Tiny ImageNet's ``root/val/images/`` labelled by ``root/val/val_annotations.txt``
(which then wins over Tiny ImageNet's unlabelled ``root/test``). Files are found recursively,
so Tiny ImageNet's ``train/<class>/images/*.JPEG`` needs no rearranging.

Every file of a split must end at one size: either ``data.image_size`` or, when unset, the
size of the first training image. Class indices come from the sorted training folders so both
splits agree on them. ``decode_file`` is the one decoder (torchvision.io, PIL for what it cannot
read) and resizer, used both to decode a split into memory and to stream it through DataLoader
workers (hssl_cli/data/batches.py), so the two give identical pixels.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, default_collate

from hssl_cli.data._common import check_split, fixed_subset, resize_uint8
from hssl_cli.data.image_set import ImageSet
from hssl_cli.errors import HsslUserError, one_line

try:
    from torchvision.io import ImageReadMode, decode_image, read_file

    _HAS_TORCHVISION_IO = True
except ImportError:  # a torchvision without image codecs: PIL decodes everything
    _HAS_TORCHVISION_IO = False

if TYPE_CHECKING:
    from hssl_cli.config import DataConfig

EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp"})
_TORCHVISION_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg"})
_GRAY_MODES = frozenset({"1", "L", "LA"})
_LAYOUT = (
    "root/train/<class>/*.png (or .jpg, .jpeg, .bmp) and root/test/<class>/... "
    "(or root/val/<class>/...)"
)
# Tiny ImageNet's labels of its val/images/ (whose test/ is unlabelled); see _list_annotated.
TINY_IMAGENET_ANNOTATIONS = "val_annotations.txt"
# Decoding into memory uses DataLoader workers (data.workers) from this many images on; below
# it, starting the workers costs more than they save.
PARALLEL_DECODE_MIN = 512
DECODE_BATCH = 64

# torchvision 0.29 deprecates its image codecs in favour of TorchCodec and warns on every call;
# they still work, and PIL takes over here (see decode_file) once they are gone.
CODEC_DEPRECATION = "The image decoding and encoding capabilities of TorchVision"


@dataclass
class _Layout:
    """What a header-only pass over both splits learns before any pixel is decoded."""

    classes: list[str]
    files: dict[str, list[tuple[Path, int]]]  # split -> (file, label), only splits that exist
    channels: int
    size: tuple[int, int] | None  # (width, height) every image shares, when image_size is unset


@dataclass
class FolderSplit:
    """One split's files (after data.limit_*) and the shape each is decoded to; no pixels yet.

    Paths are a numpy string array, not a list of objects, so forked DataLoader workers do not
    copy it page by page as reference counts change.
    """

    paths: np.ndarray  # str, [N]
    labels: np.ndarray  # int64, [N]
    num_classes: int
    channels: int
    height: int
    width: int
    name: str  # e.g. "imagefolder/train"

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)

    @property
    def decoded_bytes(self) -> int:
        """Memory the split takes decoded into uint8 [N, C, H, W]."""
        return len(self) * self.channels * self.height * self.width


def scan_split(config: DataConfig, split: str) -> FolderSplit:
    """List one split's files and fix its decoded shape; grayscale stays 1 channel only if all
    images (of both splits) are grayscale, so train and test always share a shape."""
    from hssl_cli.data import split_limit

    check_split(split)
    layout = _scan(config, split)
    files = layout.files[split]
    limit = split_limit(config, split)
    keep = fixed_subset(len(files), limit) if limit is not None else None
    if keep is not None:
        files = [files[index] for index in keep.tolist()]
    if config.image_size is not None:
        width = height = config.image_size
    else:
        assert layout.size is not None
        width, height = layout.size
    return FolderSplit(
        paths=np.array([str(path) for path, _ in files], dtype=str),
        labels=np.array([label for _, label in files], dtype=np.int64),
        num_classes=len(layout.classes),
        channels=layout.channels,
        height=height,
        width=width,
        name=f"imagefolder/{split}",
    )


def decode_file(path: str, channels: int, height: int, width: int) -> torch.Tensor:
    """Decode one file to uint8 [channels, height, width], resizing (bilinear, antialiased) if
    its size differs. torchvision.io reads PNG and JPEG; PIL reads the rest (BMP) and anything
    torchvision cannot give as 8-bit (16-bit PNG)."""
    image: torch.Tensor | None = None
    if _HAS_TORCHVISION_IO and Path(path).suffix.lower() in _TORCHVISION_EXTENSIONS:
        mode = ImageReadMode.GRAY if channels == 1 else ImageReadMode.RGB
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", CODEC_DEPRECATION, DeprecationWarning)
                image = decode_image(read_file(path), mode=mode)
        except RuntimeError:
            image = None  # PIL gets a second try, and names the file if it fails too
        if image is not None and (image.dtype != torch.uint8 or image.shape[0] != channels):
            image = None
    if image is None:
        image = _decode_with_pil(path, channels)
    if image.shape[-2:] != (height, width):
        image = resize_uint8(image.unsqueeze(0), (height, width))[0]
    return image


def _decode_with_pil(path: str, channels: int) -> torch.Tensor:
    from PIL import Image

    try:
        with Image.open(path) as image:
            array = np.array(image.convert("L" if channels == 1 else "RGB"), dtype=np.uint8)
    except (OSError, ValueError) as err:
        raise HsslUserError(_unreadable(Path(path), err)) from None
    return torch.from_numpy(array.reshape(*array.shape[:2], channels)).permute(2, 0, 1).contiguous()


class FolderDataset(Dataset):
    """Map-style dataset over a ``FolderSplit``: item i is (uint8 [C, H, W], label).

    A file that cannot be decoded gives its error message in place of the image (``collate``
    passes it on and ``check_batch`` raises it in the main process), so the user sees one line
    rather than a worker's traceback.
    """

    def __init__(self, folder: FolderSplit) -> None:
        self.folder = folder

    def __len__(self) -> int:
        return len(self.folder)

    def __getitem__(self, index: int) -> tuple[torch.Tensor | str, int]:
        folder = self.folder
        label = int(folder.labels[index])
        try:
            image = decode_file(
                str(folder.paths[index]), folder.channels, folder.height, folder.width
            )
        except HsslUserError as err:
            return str(err), label
        return image, label


def collate(items: list[tuple[torch.Tensor | str, int]]) -> Any:
    """Stack a batch (in shared memory inside a worker), or pass on the first decoding error."""
    for image, _ in items:
        if isinstance(image, str):
            return image
    return default_collate(items)


def check_batch(batch: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """A collated batch, or the decoding error a worker passed on, raised here."""
    if isinstance(batch, str):
        raise HsslUserError(batch)
    return batch[0], batch[1]


def decode_split(folder: FolderSplit, workers: int = 0) -> ImageSet:
    """Decode every file of ``folder`` into memory, in order, with ``workers`` DataLoader
    workers for a large split."""
    images = torch.empty((len(folder), *folder.image_shape), dtype=torch.uint8)
    if workers > 0 and len(folder) >= PARALLEL_DECODE_MIN:
        loader = DataLoader(
            FolderDataset(folder),
            batch_size=DECODE_BATCH,
            num_workers=workers,
            collate_fn=collate,
        )
        start = 0
        for batch in loader:
            chunk, _ = check_batch(batch)
            images[start : start + chunk.shape[0]] = chunk
            start += chunk.shape[0]
    else:
        for index, path in enumerate(folder.paths):
            images[index] = decode_file(str(path), *folder.image_shape)
    return ImageSet(
        images=images,
        labels=torch.from_numpy(folder.labels.copy()),
        num_classes=folder.num_classes,
        name=folder.name,
    )


def load_imagefolder(config: DataConfig, split: str) -> ImageSet:
    """Decode one split into uint8 [N, C, H, W] (after data.limit_*, at data.image_size)."""
    return decode_split(scan_split(config, split), config.workers)


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

    files: dict[str, list[tuple[Path, int]]] = {"train": _list_split(train_dir, index)}
    annotations = root / "val" / TINY_IMAGENET_ANNOTATIONS
    if annotations.is_file():  # Tiny ImageNet: its labelled val/ is the test split
        files["test"] = _list_annotated(annotations, index)
        test_where = f"{annotations}"
    else:
        test_dir = next((root / name for name in ("test", "val") if (root / name).is_dir()), None)
        if test_dir is not None:
            files["test"] = _list_split(test_dir, index)
            test_where = f"{test_dir}/<class>/"
        elif split == "test":
            raise HsslUserError(
                f"imagefolder: {root / 'test'} is not a folder (nor is {root / 'val'}): lay out "
                f"{root} as {_LAYOUT}"
            )
    if not files[split]:
        where = f"{train_dir}/<class>/" if split == "train" else test_where
        raise HsslUserError(f"imagefolder: no .png/.jpg/.jpeg/.bmp images in {where}: add some")

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


def _list_annotated(annotations: Path, index: dict[str, int]) -> list[tuple[Path, int]]:
    """Tiny ImageNet's validation split: images in val/images/, one ``file<TAB>class<TAB>box``
    line per image in val/val_annotations.txt; sorted per class like ``_list_split``."""
    images_dir = annotations.parent / "images"
    files: list[tuple[Path, int]] = []
    for number, line in enumerate(annotations.read_text().splitlines(), start=1):
        fields = line.split("\t")
        if not line.strip():
            continue
        if len(fields) < 2:
            raise HsslUserError(
                f"imagefolder: line {number} of {annotations} is not 'file<TAB>class<TAB>...'"
            )
        name, label = fields[0].strip(), fields[1].strip()
        if label not in index:
            raise HsslUserError(
                f"imagefolder: class {label} of {name} in {annotations} has no folder in "
                f"{annotations.parent.parent / 'train'}: add it there (labels come from train)"
            )
        path = images_dir / name
        if not path.is_file():
            raise HsslUserError(f"imagefolder: {annotations} lists {path}, which is missing")
        if path.suffix.lower() in EXTENSIONS:
            files.append((path, index[label]))
    return sorted(files, key=lambda item: (item[1], item[0]))


def _unreadable(path: Path, err: BaseException) -> str:
    reason = one_line(err)
    return f"imagefolder: cannot decode {path} ({reason}): replace or remove it"
