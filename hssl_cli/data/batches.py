"""Batches of one split for training and feature extraction: from memory, or streamed from disk.

A :class:`BatchSource` serves uint8 images ``[b, C, H, W]`` and int64 labels ``[b]`` on the
training device. Each epoch takes full batches of one permutation of the split,
``torch.randperm(N, generator=torch.Generator().manual_seed(seed * 10007 + epoch))``, in order
(the last partial batch is dropped); with ``world`` processes every rank uses the same
permutation and takes rows ``[rank * b, (rank + 1) * b)`` of each global batch, ``b = B / world``.

- :class:`InMemoryBatches` indexes an :class:`ImageSet` kept on the device (every data set).
- :class:`StreamingBatches` decodes an ``imagefolder`` split's files through DataLoader workers
  (``data.workers``), with pinned memory and non-blocking copies on CUDA. It uses the decoder
  and resize of the in-memory path (``imagefolder.decode_file``), so both give identical pixels,
  and computes channel statistics over the same fixed subset.

``data.in_memory`` picks the path for ``imagefolder`` (other data sets are always in memory):
``true`` decodes into memory, ``false`` streams, ``auto`` streams when the decoded split would
take more than ``STREAM_ABOVE_RAM_FRACTION`` of the machine's memory.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Sampler

from hssl_cli.data import STREAMABLE
from hssl_cli.data._common import check_split, fixed_subset
from hssl_cli.data.image_set import ImageSet
from hssl_cli.errors import HsslUserError

if TYPE_CHECKING:
    from hssl_cli.config import DataConfig
    from hssl_cli.data.imagefolder import FolderSplit

Batch = tuple[torch.Tensor, torch.Tensor]

# data.in_memory: auto streams a split whose decoded uint8 images would take more than this
# share of the machine's physical memory.
STREAM_ABOVE_RAM_FRACTION = 0.25
# Batch size of the pass that computes channel statistics when streaming (any size gives the
# same statistics: they are exact integer sums).
STATS_BATCH = 64


def epoch_order(count: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of one epoch (on the CPU): the same on every rank and in every path."""
    return torch.randperm(count, generator=torch.Generator().manual_seed(seed * 10007 + epoch))


def rank_rows(batch_size: int, rank: int, world: int) -> slice:
    """The rows of each global batch of ``batch_size`` that process ``rank`` of ``world`` takes."""
    if world < 1 or not 0 <= rank < world:
        raise ValueError(f"rank must be in [0, world) with world >= 1, got rank={rank}, {world=}")
    if batch_size % world:
        raise HsslUserError(
            f"train.batch_size={batch_size} does not split evenly over {world} processes; "
            f"use a multiple of {world}"
        )
    share = batch_size // world
    return slice(rank * share, (rank + 1) * share)


def physical_memory() -> int | None:
    """Bytes of physical memory, or None where os.sysconf cannot tell."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def should_stream(config: DataConfig, decoded_bytes: int) -> bool:
    """Whether ``data.in_memory`` asks to stream a streamable split of ``decoded_bytes``."""
    if config.name not in STREAMABLE or config.in_memory is True:
        return False
    if config.in_memory is False:
        return True
    memory = physical_memory()
    return memory is not None and decoded_bytes > STREAM_ABOVE_RAM_FRACTION * memory


class BatchSource(ABC):
    """One split, served in batches on ``device``; see the module docstring for the order."""

    def __init__(
        self,
        *,
        name: str,
        num_classes: int,
        image_shape: tuple[int, int, int],
        labels: torch.Tensor,
        batch_size: int,
        device: torch.device,
        seed: int,
    ) -> None:
        self.name = name
        self.num_classes = num_classes
        self.image_shape = image_shape  # (C, H, W)
        self.labels = labels  # int64 [N] on the CPU, in file order
        self.batch_size = batch_size
        self.device = device
        self.seed = seed

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def steps_per_epoch(self) -> int:
        """Full global batches per epoch; a split smaller than one batch is a user error."""
        steps = len(self) // self.batch_size
        if steps == 0:
            raise HsslUserError(
                f"train.batch_size={self.batch_size} exceeds the {len(self)} training images; "
                "lower train.batch_size"
            )
        return steps

    def epoch_indices(
        self,
        epoch: int,
        rank: int = 0,
        world: int = 1,
        device: torch.device | None = None,
        start: int = 0,
    ) -> Iterator[torch.Tensor]:
        """This rank's indices (int64, on ``device``, default CPU) of each full global batch of
        ``epoch``, in order, from batch ``start`` (a run resumed mid-epoch skips the others)."""
        rows = rank_rows(self.batch_size, rank, world)
        steps, size = self.steps_per_epoch, self.batch_size
        order = epoch_order(len(self), self.seed, epoch)
        if device is not None:
            order = order.to(device)
        for step in range(start, steps):
            yield order[step * size : (step + 1) * size][rows]

    @abstractmethod
    def epoch(self, epoch: int, rank: int = 0, world: int = 1, start: int = 0) -> Iterator[Batch]:
        """This rank's (images, labels) of each full global batch of ``epoch`` from batch
        ``start``, on the device."""

    @abstractmethod
    def ordered(self, batch_size: int | None = None) -> Iterator[Batch]:
        """Every image in file order, no shuffle, the last batch possibly partial (features)."""

    @abstractmethod
    def channel_stats(self) -> tuple[list[float], list[float]]:
        """``hssl_cli.data.channel_stats`` of the split (same subset and values in both paths)."""

    @abstractmethod
    def head(self, count: int) -> torch.Tensor:
        """The first ``count`` images (uint8, CPU), e.g. to trace the model's feature shapes."""

    def close(self) -> None:
        """Release worker processes, if any (also done when the source is garbage collected)."""
        return None


class InMemoryBatches(BatchSource):
    """An :class:`ImageSet` kept on ``storage`` (the training device unless told otherwise);
    batches index it there."""

    def __init__(
        self,
        data: ImageSet,
        batch_size: int,
        device: torch.device,
        seed: int = 0,
        storage: torch.device | None = None,
    ) -> None:
        super().__init__(
            name=data.name,
            num_classes=data.num_classes,
            image_shape=tuple(data.images.shape[1:]),  # type: ignore[arg-type]
            labels=data.labels.cpu(),
            batch_size=batch_size,
            device=device,
            seed=seed,
        )
        storage = device if storage is None else storage
        self.data = ImageSet(
            images=data.images.to(storage),
            labels=data.labels.to(storage),
            num_classes=data.num_classes,
            name=data.name,
        )

    def epoch(self, epoch: int, rank: int = 0, world: int = 1, start: int = 0) -> Iterator[Batch]:
        images, labels = self.data.images, self.data.labels
        for indices in self.epoch_indices(epoch, rank, world, images.device, start):
            yield images[indices].to(self.device), labels[indices].to(self.device)

    def ordered(self, batch_size: int | None = None) -> Iterator[Batch]:
        size = batch_size or self.batch_size
        images, labels = self.data.images, self.data.labels
        for start in range(0, len(self), size):
            yield (
                images[start : start + size].to(self.device),
                labels[start : start + size].to(self.device),
            )

    def channel_stats(self) -> tuple[list[float], list[float]]:
        from hssl_cli.data import channel_stats

        return channel_stats(self.data)

    def head(self, count: int) -> torch.Tensor:
        return self.data.images[:count].cpu()


class _Plan(Sampler[list[int]]):
    """The batches of the next pass; set before each pass of a persistent-worker DataLoader
    (its sampler runs in the main process, so workers see the new plan)."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class StreamingBatches(BatchSource):
    """An image folder's split decoded batch by batch in ``workers`` DataLoader processes."""

    def __init__(
        self,
        folder: FolderSplit,
        batch_size: int,
        device: torch.device,
        seed: int = 0,
        workers: int = 4,
    ) -> None:
        from hssl_cli.data.imagefolder import FolderDataset

        super().__init__(
            name=folder.name,
            num_classes=folder.num_classes,
            image_shape=folder.image_shape,
            labels=torch.from_numpy(folder.labels.copy()),
            batch_size=batch_size,
            device=device,
            seed=seed,
        )
        self.folder = folder
        self.workers = workers
        self.dataset = FolderDataset(folder)
        self._plan = _Plan()
        self._epoch_loader: DataLoader | None = None

    def _loader(self, batch_sampler: Sampler[list[int]], persistent: bool) -> DataLoader:
        from hssl_cli.data.imagefolder import collate

        return DataLoader(
            self.dataset,
            batch_sampler=batch_sampler,
            num_workers=self.workers,
            collate_fn=collate,
            pin_memory=self.device.type == "cuda",
            persistent_workers=persistent and self.workers > 0,
        )

    def _to_device(self, loader: DataLoader) -> Iterator[Batch]:
        from hssl_cli.data.imagefolder import check_batch

        for batch in loader:
            images, labels = check_batch(batch)
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )

    def epoch(self, epoch: int, rank: int = 0, world: int = 1, start: int = 0) -> Iterator[Batch]:
        # Planned when iteration starts, so the plan always belongs to the pass being read.
        self._plan.batches = [
            indices.tolist() for indices in self.epoch_indices(epoch, rank, world, start=start)
        ]
        if self._epoch_loader is None:
            # One loader whose workers live across epochs: no start-up cost per epoch.
            self._epoch_loader = self._loader(self._plan, persistent=True)
        yield from self._to_device(self._epoch_loader)

    def _in_order(self, indices: list[int], batch_size: int) -> Iterator[Batch]:
        plan = _Plan()
        plan.batches = [indices[i : i + batch_size] for i in range(0, len(indices), batch_size)]
        return self._to_device(self._loader(plan, persistent=False))

    def ordered(self, batch_size: int | None = None) -> Iterator[Batch]:
        return self._in_order(list(range(len(self))), batch_size or self.batch_size)

    def channel_stats(self) -> tuple[list[float], list[float]]:
        from hssl_cli.data import STATS_MAX_IMAGES
        from hssl_cli.data._common import ChannelSums

        if len(self) == 0:
            raise ValueError(f"{self.name}: cannot compute channel statistics of an empty split")
        keep = fixed_subset(len(self), STATS_MAX_IMAGES)
        indices = list(range(len(self))) if keep is None else keep.tolist()
        sums = ChannelSums()
        for images, _ in self._in_order(indices, STATS_BATCH):
            sums.add(images)
        return sums.mean_std()

    def head(self, count: int) -> torch.Tensor:
        from hssl_cli.data.imagefolder import decode_file

        count = min(count, len(self))
        shape = self.folder.image_shape
        return torch.stack([decode_file(str(path), *shape) for path in self.folder.paths[:count]])

    def close(self) -> None:
        self._epoch_loader = None  # its iterator shuts the persistent workers down


def open_batches(
    config: DataConfig,
    split: str,
    batch_size: int,
    device: torch.device,
    seed: int = 0,
    storage: torch.device | None = None,
) -> BatchSource:
    """The split's batches, in memory or streamed as ``data.in_memory`` says (see the module
    docstring). ``seed`` is the recipe seed (the permutations); ``storage`` is where an
    in-memory split's images live (default ``device``; the CPU for a one-pass feature
    extraction that should not hold the whole split on the GPU)."""
    from hssl_cli.data import _check_image_set, load_images

    check_split(split)
    if config.name in STREAMABLE:
        from hssl_cli.data.imagefolder import decode_split, scan_split

        folder = scan_split(config, split)
        if should_stream(config, folder.decoded_bytes):
            return StreamingBatches(folder, batch_size, device, seed, config.workers)
        data = decode_split(folder, config.workers)
        _check_image_set(data)
    else:
        data = load_images(config, split)
    return InMemoryBatches(data, batch_size, device, seed, storage)
