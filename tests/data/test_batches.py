"""Batch sources: streamed and in-memory image folders give identical batches, per rank too."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from pydantic import ValidationError

from hssl_cli.config import DataConfig
from hssl_cli.data import batches as batches_module
from hssl_cli.data import channel_stats, load_images
from hssl_cli.data.batches import (
    InMemoryBatches,
    StreamingBatches,
    open_batches,
    rank_rows,
)
from hssl_cli.errors import HsslUserError

# torchvision 0.29 deprecates its image codecs (hssl_cli/data/imagefolder.py silences this
# outside pytest, which resets warning filters for each test).
pytestmark = pytest.mark.filterwarnings("ignore:The image decoding and encoding:DeprecationWarning")

CPU = torch.device("cpu")
SIZE = 12
BATCH = 8
CLASSES = ("ant", "bee", "cat")
SHAPES = ((10, 14), (16, 16), (20, 12), (12, 12))  # (height, width); 12x12 needs no resize
FORMATS = ("png", "jpg", "jpeg", "bmp")


def write_image(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 training and 9 test images in 3 classes: PNG, JPEG, BMP, mixed sizes, one grayscale."""
    root = tmp_path_factory.mktemp("folder")
    rng = np.random.default_rng(0)
    for split, count in (("train", 40), ("test", 9)):
        for i in range(count):
            height, width = SHAPES[i % len(SHAPES)]
            array = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
            if i == 5:
                array = array[..., 0]  # a grayscale file in a colour set: read as RGB
            name = f"{i:02d}.{FORMATS[i % len(FORMATS)]}"
            write_image(root / split / CLASSES[i % len(CLASSES)] / name, array)
    return root


def config(root: Path, **fields: object) -> DataConfig:
    return DataConfig(name="imagefolder", root=str(root), image_size=SIZE, **fields)  # type: ignore[arg-type]


def collect(source, epoch: int, rank: int = 0, world: int = 1) -> list[tuple[torch.Tensor, ...]]:
    return list(source.epoch(epoch, rank, world))


def assert_same(left: list, right: list) -> None:
    assert len(left) == len(right)
    for (images_a, labels_a), (images_b, labels_b) in zip(left, right, strict=True):
        assert images_a.dtype == torch.uint8 and labels_a.dtype == torch.int64
        assert torch.equal(images_a, images_b) and torch.equal(labels_a, labels_b)


@pytest.fixture(scope="module")
def memory(folder: Path) -> InMemoryBatches:
    source = open_batches(config(folder, in_memory=True), "train", BATCH, CPU, seed=3)
    assert isinstance(source, InMemoryBatches)
    return source


@pytest.fixture(scope="module")
def stream(folder: Path) -> StreamingBatches:
    source = open_batches(config(folder, in_memory=False, workers=0), "train", BATCH, CPU, seed=3)
    assert isinstance(source, StreamingBatches)
    return source


def test_in_memory_follows_the_trainer_permutation(folder: Path, memory: InMemoryBatches) -> None:
    data = load_images(config(folder), "train")
    assert len(memory) == 40 and memory.steps_per_epoch == 5  # 40 // 8, none dropped here
    order = torch.randperm(40, generator=torch.Generator().manual_seed(3 * 10007 + 1))
    for step, (images, labels) in enumerate(memory.epoch(1)):
        rows = order[step * BATCH : (step + 1) * BATCH]
        assert torch.equal(images, data.images[rows]) and torch.equal(labels, data.labels[rows])


def test_streaming_equals_in_memory(memory: InMemoryBatches, stream: StreamingBatches) -> None:
    assert stream.image_shape == memory.image_shape == (3, SIZE, SIZE)
    assert stream.num_classes == memory.num_classes == 3
    assert torch.equal(stream.labels, memory.labels)
    for epoch in (0, 1):
        assert_same(collect(stream, epoch), collect(memory, epoch))
    assert torch.equal(stream.head(3), memory.head(3))
    assert stream.channel_stats() == memory.channel_stats() == channel_stats(memory.data)
    assert channel_stats(stream) == channel_stats(memory)


def test_epochs_differ(memory: InMemoryBatches) -> None:
    first, second = collect(memory, 0), collect(memory, 1)
    assert not torch.equal(first[0][1], second[0][1]) or not torch.equal(first[0][0], second[0][0])
    assert_same(collect(memory, 0), first)  # and an epoch is reproducible


def test_two_ranks_split_each_global_batch(
    memory: InMemoryBatches, stream: StreamingBatches
) -> None:
    whole = collect(memory, 2)
    ranks = [collect(memory, 2, rank, 2) for rank in (0, 1)]
    for rank in (0, 1):
        assert_same(collect(stream, 2, rank, 2), ranks[rank])
    for step, (images, labels) in enumerate(whole):
        (images_0, labels_0), (images_1, labels_1) = ranks[0][step], ranks[1][step]
        assert images_0.shape[0] == BATCH // 2
        assert torch.equal(torch.cat([images_0, images_1]), images)
        assert torch.equal(torch.cat([labels_0, labels_1]), labels)


def test_workers_give_the_same_batches(folder: Path, stream: StreamingBatches) -> None:
    workers = open_batches(config(folder, in_memory=False, workers=2), "train", BATCH, CPU, seed=3)
    try:
        for epoch in (0, 1):  # the second pass reuses the persistent workers
            assert_same(collect(workers, epoch), collect(stream, epoch))
        assert_same(list(workers.ordered(16)), list(stream.ordered(16)))
        assert workers.channel_stats() == stream.channel_stats()
    finally:
        workers.close()


def test_ordered_batches_cover_the_split_in_order(folder: Path) -> None:
    data = load_images(config(folder), "test")
    for in_memory in (True, False):
        flag = config(folder, in_memory=in_memory, workers=0)
        batches = list(open_batches(flag, "test", 4, CPU, storage=CPU).ordered())
        assert [len(labels) for _, labels in batches] == [4, 4, 1]  # the last one partial
        assert torch.equal(torch.cat([images for images, _ in batches]), data.images)
        assert torch.equal(torch.cat([labels for _, labels in batches]), data.labels)


def test_limit_and_stats_subset_agree(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import hssl_cli.data

    monkeypatch.setattr(hssl_cli.data, "STATS_MAX_IMAGES", 10)  # exercise the fixed subset
    sources = [
        open_batches(config(folder, in_memory=flag, limit_train=25, workers=0), "train", BATCH, CPU)
        for flag in (True, False)
    ]
    assert [len(source) for source in sources] == [25, 25]
    assert_same(collect(sources[0], 0), collect(sources[1], 0))
    limited = load_images(config(folder, limit_train=25), "train")
    assert sources[0].channel_stats() == sources[1].channel_stats() == channel_stats(limited)
    assert sources[0].channel_stats() != channel_stats(load_images(config(folder), "train"))


def test_auto_streams_above_the_memory_share(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    auto = config(folder, in_memory="auto", workers=0)
    assert isinstance(open_batches(auto, "train", BATCH, CPU), InMemoryBatches)
    monkeypatch.setattr(batches_module, "STREAM_ABOVE_RAM_FRACTION", 1e-12)
    assert isinstance(open_batches(auto, "train", BATCH, CPU), StreamingBatches)
    # Only image folders stream: the others stay in memory, and asking them to stream is refused.
    digits = DataConfig(in_memory="auto", limit_train=64)
    assert isinstance(open_batches(digits, "train", BATCH, CPU), InMemoryBatches)
    with pytest.raises(ValidationError, match="streams only imagefolder"):
        DataConfig(in_memory=False, limit_train=64)


def test_rank_rows_and_too_small_a_split(memory: InMemoryBatches) -> None:
    assert rank_rows(8, 1, 2) == slice(4, 8)
    with pytest.raises(HsslUserError, match="batch_size=8 does not split evenly over 3"):
        rank_rows(8, 0, 3)
    with pytest.raises(ValueError):
        rank_rows(8, 2, 2)
    big = InMemoryBatches(memory.data, 64, CPU)
    with pytest.raises(HsslUserError, match="exceeds the 40 training images"):
        next(big.epoch(0))


@pytest.mark.parametrize("workers", [0, 1])
def test_a_broken_file_is_one_user_error_line(tmp_path: Path, workers: int) -> None:
    for i in range(4):
        write_image(tmp_path / "train" / "a" / f"{i}.png", np.zeros((4, 4, 3), np.uint8))
    source = open_batches(config(tmp_path, in_memory=False, workers=workers), "train", 2, CPU)
    (tmp_path / "train" / "a" / "2.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(HsslUserError) as info:
        list(source.ordered())
    message = str(info.value)
    assert "2.png" in message and "\n" not in message and "Traceback" not in message
    source.close()


def test_tiny_imagenet_and_val_layouts(tmp_path: Path) -> None:
    """Tiny ImageNet: train/<wnid>/images/*.JPEG; val/images/ labelled by val_annotations.txt;
    test/images/ unlabelled (ignored)."""
    pixels = {name: np.full((8, 8, 3), value, np.uint8) for name, value in (("x", 10), ("y", 20))}
    for wnid, array in pixels.items():
        write_image(tmp_path / "train" / wnid / "images" / f"{wnid}_0.JPEG", array)
    write_image(tmp_path / "test" / "images" / "test_0.JPEG", pixels["x"])
    for name, wnid in (("val_1.JPEG", "y"), ("val_0.JPEG", "x"), ("val_2.JPEG", "y")):
        write_image(tmp_path / "val" / "images" / name, pixels[wnid])
    (tmp_path / "val" / "val_annotations.txt").write_text(
        "val_1.JPEG\ty\t0\t0\t7\t7\nval_0.JPEG\tx\t0\t0\t7\t7\nval_2.JPEG\ty\t1\t1\t6\t6\n"
    )
    tiny = DataConfig(name="imagefolder", root=str(tmp_path))
    train, test = load_images(tiny, "train"), load_images(tiny, "test")
    assert train.labels.tolist() == [0, 1] and train.images.shape == (2, 3, 8, 8)
    assert test.labels.tolist() == [0, 1, 1] and test.num_classes == 2
    assert [int(image.float().mean().round()) for image in test.images] == [10, 20, 20]

    (tmp_path / "val" / "val_annotations.txt").write_text("val_0.JPEG\tz\t0\t0\t7\t7\n")
    with pytest.raises(HsslUserError, match="class z of val_0.JPEG"):
        load_images(tiny, "test")

    # ImageNet's layout: val/<class>/ is the test split when there is no test/.
    other = tmp_path / "imagenet"
    for split in ("train", "val"):
        for wnid, array in pixels.items():
            write_image(other / split / wnid / "0.png", array)
    test = load_images(DataConfig(name="imagefolder", root=str(other)), "test")
    assert test.labels.tolist() == [0, 1]


@pytest.mark.cuda
def test_streaming_to_cuda_equals_in_memory(folder: Path, memory: InMemoryBatches) -> None:
    """Pinned memory and non-blocking copies deliver the same batches on the GPU."""
    cuda = torch.device("cuda")
    on_gpu = open_batches(config(folder, in_memory=True), "train", BATCH, cuda, seed=3)
    streamed = open_batches(
        config(folder, in_memory=False, workers=2), "train", BATCH, cuda, seed=3
    )
    try:
        for rank in (0, 1):
            gpu = collect(on_gpu, 1, rank, 2)
            assert all(images.device.type == "cuda" for images, _ in gpu)
            assert_same(collect(streamed, 1, rank, 2), gpu)
            cpu = [(images.cuda(), labels.cuda()) for images, labels in collect(memory, 1, rank, 2)]
            assert_same(gpu, cpu)
        assert streamed.channel_stats() == memory.channel_stats()
    finally:
        streamed.close()
