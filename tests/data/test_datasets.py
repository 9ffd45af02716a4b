"""Every data set loader, on data generated in tmp_path (or bundled): no network, CPU only."""

from __future__ import annotations

import gzip
import hashlib
import pickle
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from hssl_cli.config import DataConfig
from hssl_cli.data import DATASETS, ImageSet, channel_stats, image_shape, load_images
from hssl_cli.data._common import stratified_split
from hssl_cli.data.idx import read_idx
from hssl_cli.errors import HsslUserError

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


def user_error(call: object, *args: object) -> str:
    """Run a call expected to fail with a user error, and return its (one-line) message."""
    with pytest.raises(HsslUserError) as info:
        call(*args)  # type: ignore[operator]
    message = str(info.value)
    assert "\n" not in message
    return message


# ---------------------------------------------------------------- registry and import cost


@pytest.mark.parametrize("name", sorted(DATASETS))
def test_every_registered_name_loads_or_says_which_files_are_missing(
    tmp_path: Path, name: str
) -> None:
    """With nothing on disk a data set either loads (bundled) or names itself and where it
    looked, in one line: never a stack trace from a loader that does not exist."""
    config = DataConfig(name=name, root=str(tmp_path), path=str(tmp_path / "absent.npz"))
    try:
        data = load_images(config, "test")
    except HsslUserError as err:
        message = str(err)
        assert "\n" not in message and message.startswith(name), message
        assert str(tmp_path) in message
        return
    assert len(data) > 0 and data.name == f"{name}/test"
    assert data.labels.unique().tolist() == list(range(data.num_classes))
    expected_shape = image_shape(config)
    assert expected_shape is None or tuple(data.images.shape[1:]) == expected_shape


def test_import_is_cheap() -> None:
    """Recipe validation imports the package: it must not pull in torch and friends."""
    heavy = ["torch", "torchvision", "sklearn", "PIL", "numpy"]
    code = (
        "import sys, hssl_cli.data\n"
        f"loaded = [m for m in {heavy!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_unknown_name_rejected_by_recipe() -> None:
    with pytest.raises(ValueError, match="unknown data set 'nope'"):
        DataConfig(name="nope")


def test_bad_split_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="split"):
        load_images(DataConfig(), "val")


# ---------------------------------------------------------------- digits


def test_digits_shapes_and_split_sizes() -> None:
    train = load_images(DataConfig(), "train")
    test = load_images(DataConfig(), "test")
    assert train.images.shape[1:] == (1, 32, 32) and test.images.shape[1:] == (1, 32, 32)
    assert train.images.dtype == torch.uint8 and train.labels.dtype == torch.int64
    assert train.images.is_contiguous() and test.images.is_contiguous()
    assert len(train) + len(test) == 1797
    assert abs(len(test) - 0.2 * 1797) <= 10
    assert train.num_classes == test.num_classes == 10
    assert (train.name, test.name) == ("digits/train", "digits/test")
    assert int(train.images.max()) == 255 and int(train.images.min()) == 0


def test_digits_deterministic_and_stratified() -> None:
    first = load_images(DataConfig(test_fraction=0.3), "test")
    again = load_images(DataConfig(test_fraction=0.3), "test")
    assert torch.equal(first.images, again.images) and torch.equal(first.labels, again.labels)
    from sklearn.datasets import load_digits

    target = load_digits().target
    counts = np.bincount(first.labels.numpy(), minlength=10)
    assert np.all(np.abs(counts - 0.3 * np.bincount(target)) <= 1)


def test_digits_split_disjoint_and_pixels_exact() -> None:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    train_idx = stratified_split(bunch.target, 0.2, "train", "digits")
    test_idx = stratified_split(bunch.target, 0.2, "test", "digits")
    assert not set(train_idx) & set(test_idx)
    assert sorted({*train_idx, *test_idx}) == list(range(len(bunch.target)))

    # At 8x8 there is no resize, so pixels are exactly the 0..16 values scaled to 0..255.
    test = load_images(DataConfig(image_size=8), "test")
    expected = np.rint(bunch.images[test_idx] * 255 / 16).astype(np.uint8)
    assert np.array_equal(test.images[:, 0].numpy(), expected)
    assert np.array_equal(test.labels.numpy(), bunch.target[test_idx])


# ---------------------------------------------------------------- IDX folders


def write_idx(path: Path, array: np.ndarray, gz: bool = False) -> Path:
    codes = {np.dtype(np.uint8): 0x08, np.dtype(np.int32): 0x0C}
    header = bytes([0, 0, codes[array.dtype], array.ndim])
    header += np.asarray(array.shape, dtype=">u4").tobytes()
    payload = header + array.astype(array.dtype.newbyteorder(">")).tobytes()
    if gz:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_idx_folder(folder: Path, gz: bool, n_train: int = 12, n_test: int = 5) -> dict:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    arrays = {}
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(count, 28, 28), dtype=np.uint8)
        labels = (np.arange(count) % 10).astype(np.uint8)
        write_idx(folder / f"{prefix}-images-idx3-ubyte", images, gz)
        write_idx(folder / f"{prefix}-labels-idx1-ubyte", labels, gz)
        arrays[prefix] = (images, labels)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_idx_folder(tmp_path: Path, gz: bool, name: str) -> None:
    arrays = make_idx_folder(tmp_path, gz)
    for split, prefix in (("train", "train"), ("test", "t10k")):
        data = load_images(DataConfig(name=name, root=str(tmp_path)), split)
        images, labels = arrays[prefix]
        assert data.images.shape == (len(labels), 1, 28, 28)
        assert np.array_equal(data.images[:, 0].numpy(), images)
        assert np.array_equal(data.labels.numpy(), labels)
        assert data.labels.dtype == torch.int64 and data.num_classes == 10
        assert data.name == f"{name}/{split}"


def test_read_idx_wider_types(tmp_path: Path) -> None:
    values = np.array([[1, -2], [70000, 3]], dtype=np.int32)
    read = read_idx(write_idx(tmp_path / "wide-idx2-int", values))
    assert read.dtype == np.int32 and np.array_equal(read, values)


def test_idx_folder_preferred_over_torchvision_layout(tmp_path: Path) -> None:
    arrays = make_idx_folder(tmp_path, gz=True)
    make_idx_folder(tmp_path / "MNIST" / "raw", gz=False, n_train=3)
    data = load_images(DataConfig(name="mnist", root=str(tmp_path)), "train")
    assert np.array_equal(data.images[:, 0].numpy(), arrays["train"][0])


def test_idx_missing_file(tmp_path: Path) -> None:
    make_idx_folder(tmp_path, gz=True)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    message = user_error(load_images, DataConfig(name="mnist", root=str(tmp_path)), "test")
    assert "t10k-labels-idx1-ubyte" in message and str(tmp_path) in message


@pytest.mark.parametrize(
    "corrupt",
    ["bad_magic", "truncated", "bad_gzip", "label_count", "label_range", "wrong_rank"],
)
def test_corrupt_idx(tmp_path: Path, corrupt: str) -> None:
    make_idx_folder(tmp_path, gz=True)
    images_gz = tmp_path / "train-images-idx3-ubyte.gz"
    labels_gz = tmp_path / "train-labels-idx1-ubyte.gz"
    payload = gzip.decompress(images_gz.read_bytes())
    if corrupt == "bad_magic":
        images_gz.write_bytes(gzip.compress(b"\x12\x34" + payload[2:]))
    elif corrupt == "truncated":
        images_gz.write_bytes(gzip.compress(payload[:-100]))
    elif corrupt == "bad_gzip":
        images_gz.write_bytes(b"this is not gzip data at all")
    elif corrupt == "label_count":
        labels_gz.unlink()
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(7, np.uint8), gz=True)
    elif corrupt == "label_range":
        labels_gz.unlink()
        write_idx(tmp_path / "train-labels-idx1-ubyte", np.full(12, 10, np.uint8), gz=True)
    else:
        images_gz.unlink()
        write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((12, 784), np.uint8), gz=True)
    message = user_error(load_images, DataConfig(name="fashion-mnist", root=str(tmp_path)), "train")
    assert "IDX file" in message and "train-" in message


def test_mnist_torchvision_layout(tmp_path: Path) -> None:
    arrays = make_idx_folder(tmp_path / "MNIST" / "raw", gz=False)
    data = load_images(DataConfig(name="mnist", root=str(tmp_path)), "test")
    images, labels = arrays["t10k"]
    assert data.images.shape == (5, 1, 28, 28)
    assert np.array_equal(data.images[:, 0].numpy(), images)
    assert np.array_equal(data.labels.numpy(), labels)


@pytest.mark.skipif(not DEBIAN_FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed")
def test_debian_fashion_mnist() -> None:
    data = load_images(DataConfig(name="fashion-mnist", root=str(DEBIAN_FASHION_MNIST)), "test")
    assert data.images.shape == (10000, 1, 28, 28)
    assert data.labels.bincount().tolist() == [1000] * 10


# ---------------------------------------------------------------- torchvision layouts


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def write_pickle(path: Path, obj: object) -> None:
    path.write_bytes(pickle.dumps(obj))


def test_cifar10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Files in CIFAR's native pickled format; md5 lists point at them so torchvision's own
    integrity check runs and passes."""
    from torchvision.datasets import CIFAR10

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(2)
    batches = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        images = rng.integers(0, 256, size=(3, 3, 32, 32), dtype=np.uint8)
        labels = rng.integers(0, 10, size=3).tolist()
        write_pickle(folder / name, {"data": images.reshape(3, -1), "labels": labels})
        batches[name] = (images, labels)
    write_pickle(folder / "batches.meta", {"label_names": [f"c{i}" for i in range(10)]})
    train_list = [[f"data_batch_{i}", md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    monkeypatch.setattr(CIFAR10, "train_list", train_list)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", md5(folder / "test_batch")]])
    meta = {"filename": "batches.meta", "key": "label_names", "md5": md5(folder / "batches.meta")}
    monkeypatch.setattr(CIFAR10, "meta", meta)

    train = load_images(DataConfig(name="cifar10", root=str(tmp_path)), "train")
    assert train.images.shape == (15, 3, 32, 32) and train.num_classes == 10
    expected = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert np.array_equal(train.images.numpy(), expected)
    test = load_images(DataConfig(name="cifar10", root=str(tmp_path)), "test")
    assert np.array_equal(test.images.numpy(), batches["test_batch"][0])
    assert test.labels.tolist() == batches["test_batch"][1]

    # A file that no longer matches its checksum reads as missing or corrupted.
    (folder / "test_batch").write_bytes(b"garbage")
    message = user_error(load_images, DataConfig(name="cifar10", root=str(tmp_path)), "test")
    assert "cifar-10-batches-py" in message


def test_cifar100(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import CIFAR100

    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(3)
    splits = {}
    for name, count in (("train", 6), ("test", 4)):
        images = rng.integers(0, 256, size=(count, 3, 32, 32), dtype=np.uint8)
        fine = [99, 0, 57, 3, 42, 7][:count]
        entry = {
            "data": images.reshape(count, -1),
            "fine_labels": fine,
            "coarse_labels": [0] * count,
        }
        write_pickle(folder / name, entry)
        splits[name] = (images, fine)
    write_pickle(folder / "meta", {"fine_label_names": [f"f{i}" for i in range(100)]})
    monkeypatch.setattr(CIFAR100, "train_list", [["train", md5(folder / "train")]])
    monkeypatch.setattr(CIFAR100, "test_list", [["test", md5(folder / "test")]])
    meta = {"filename": "meta", "key": "fine_label_names", "md5": md5(folder / "meta")}
    monkeypatch.setattr(CIFAR100, "meta", meta)

    for split in ("train", "test"):
        data = load_images(DataConfig(name="cifar100", root=str(tmp_path)), split)
        assert data.num_classes == 100
        assert np.array_equal(data.images.numpy(), splits[split][0])
        assert data.labels.tolist() == splits[split][1]


def test_stl10(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchvision.datasets import STL10

    folder = tmp_path / "stl10_binary"
    folder.mkdir()
    rng = np.random.default_rng(4)
    splits = {}
    for split, count in (("train", 3), ("test", 2), ("unlabeled", 1)):
        images = rng.integers(0, 256, size=(count, 3, 96, 96), dtype=np.uint8)
        # STL-10 stores each channel column-major.
        (folder / f"{split}_X.bin").write_bytes(images.transpose(0, 1, 3, 2).tobytes())
        labels = np.arange(count, dtype=np.uint8) + 1  # 1-based on disk
        if split != "unlabeled":
            (folder / f"{split}_y.bin").write_bytes(labels.tobytes())
        splits[split] = (images, labels - 1)
    checks = {name: md5(folder / name) for name in (p.name for p in folder.iterdir())}
    monkeypatch.setattr(
        STL10,
        "train_list",
        [[name, checks[name]] for name in ("train_X.bin", "train_y.bin", "unlabeled_X.bin")],
    )
    monkeypatch.setattr(STL10, "test_list", [[n, checks[n]] for n in ("test_X.bin", "test_y.bin")])

    for split in ("train", "test"):
        data = load_images(DataConfig(name="stl10", root=str(tmp_path)), split)
        assert data.images.shape == (len(splits[split][1]), 3, 96, 96)
        assert data.images.is_contiguous()
        assert np.array_equal(data.images.numpy(), splits[split][0])
        assert np.array_equal(data.labels.numpy(), splits[split][1])
    small = load_images(DataConfig(name="stl10", root=str(tmp_path), image_size=32), "test")
    assert small.images.shape == (2, 3, 32, 32)


@pytest.mark.parametrize(
    ("name", "looked_for"),
    [
        ("cifar10", "cifar-10-batches-py"),
        ("cifar100", "cifar-100-python"),
        ("stl10", "stl10_binary"),
        ("mnist", "MNIST/raw"),
        ("fashion-mnist", "FashionMNIST/raw"),
    ],
)
def test_missing_dataset(tmp_path: Path, name: str, looked_for: str) -> None:
    message = user_error(load_images, DataConfig(name=name, root=str(tmp_path)), "train")
    assert f"{name} not found under {tmp_path}" in message
    assert looked_for in message and "data.download=true" in message


@pytest.mark.parametrize("name", ["cifar10", "stl10", "mnist", "imagefolder"])
def test_root_unset(name: str) -> None:
    assert "data.root" in user_error(load_images, DataConfig(name=name), "train")


def test_download_failure_is_a_user_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets.cifar

    def offline(*args: object, **kwargs: object) -> None:
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(torchvision.datasets.cifar, "download_and_extract_archive", offline)
    config = DataConfig(name="cifar10", root=str(tmp_path), download=True)
    message = user_error(load_images, config, "train")
    assert "downloading it failed" in message and "no network" in message


# ---------------------------------------------------------------- image folders


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_imagefolder_rgb(tmp_path: Path) -> None:
    rng = np.random.default_rng(5)
    pictures = {}
    for split, cls, count in (("train", "dog", 3), ("train", "cat", 2), ("test", "dog", 2)):
        for i in range(count):
            array = rng.integers(0, 256, size=(6, 8, 3), dtype=np.uint8)  # H=6, W=8
            save_png(tmp_path / split / cls / f"{i}.png", array)
            pictures[(split, cls, i)] = array
    (tmp_path / "train" / "cat" / "notes.txt").write_text("not an image")

    train = load_images(DataConfig(name="imagefolder", root=str(tmp_path)), "train")
    assert train.images.shape == (5, 3, 6, 8) and train.num_classes == 2
    assert train.labels.tolist() == [0, 0, 1, 1, 1]  # cat < dog, sorted
    assert np.array_equal(train.images[0].permute(1, 2, 0).numpy(), pictures[("train", "cat", 0)])
    assert np.array_equal(train.images[4].permute(1, 2, 0).numpy(), pictures[("train", "dog", 2)])
    test = load_images(DataConfig(name="imagefolder", root=str(tmp_path)), "test")
    assert test.labels.tolist() == [1, 1]  # "dog" keeps its train index without a test "cat"
    assert test.num_classes == 2


def test_imagefolder_grayscale_and_mixed(tmp_path: Path) -> None:
    gray = np.arange(16, dtype=np.uint8).reshape(4, 4) * 10
    save_png(tmp_path / "train" / "a" / "0.png", gray)
    save_png(tmp_path / "train" / "b" / "0.png", gray[::-1].copy())
    save_png(tmp_path / "test" / "a" / "0.png", gray)
    data = load_images(DataConfig(name="imagefolder", root=str(tmp_path)), "train")
    assert data.images.shape == (2, 1, 4, 4)
    assert np.array_equal(data.images[0, 0].numpy(), gray)

    # One colour image anywhere (here in test) makes both splits 3-channel.
    save_png(tmp_path / "test" / "b" / "0.png", np.zeros((4, 4, 3), np.uint8))
    data = load_images(DataConfig(name="imagefolder", root=str(tmp_path)), "train")
    assert data.images.shape == (2, 3, 4, 4)
    assert all(np.array_equal(data.images[0, c].numpy(), gray) for c in range(3))


def test_imagefolder_sizes(tmp_path: Path) -> None:
    save_png(tmp_path / "train" / "a" / "0.jpg", np.full((10, 10, 3), 200, np.uint8))
    save_png(tmp_path / "train" / "a" / "1.png", np.full((12, 9, 3), 100, np.uint8))
    message = user_error(load_images, DataConfig(name="imagefolder", root=str(tmp_path)), "train")
    assert "data.image_size" in message and "1.png" in message
    data = load_images(DataConfig(name="imagefolder", root=str(tmp_path), image_size=5), "train")
    assert data.images.shape == (2, 3, 5, 5)
    assert abs(int(data.images[1].float().mean()) - 100) <= 1  # constant stays constant


def test_imagefolder_errors(tmp_path: Path) -> None:
    config = DataConfig(name="imagefolder", root=str(tmp_path))
    assert "train" in user_error(load_images, config, "train")
    save_png(tmp_path / "train" / "a" / "0.png", np.zeros((4, 4), np.uint8))
    assert "test" in user_error(load_images, config, "test")
    save_png(tmp_path / "test" / "zebra" / "0.png", np.zeros((4, 4), np.uint8))
    assert "zebra" in user_error(load_images, config, "test")
    # Loading train checks the test folder too, so both splits always agree.
    assert "zebra" in user_error(load_images, config, "train")
    (tmp_path / "test" / "zebra" / "0.png").unlink()
    (tmp_path / "test" / "zebra").rmdir()
    (tmp_path / "train" / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    assert "broken.png" in user_error(load_images, config, "train")


# ---------------------------------------------------------------- npz


def indexed_images(count: int, shape: tuple[int, ...] = (6, 6)) -> np.ndarray:
    """Image i is filled with the value i, so a loaded image names its source row."""
    return np.broadcast_to(
        np.arange(count, dtype=np.uint8).reshape(-1, *[1] * len(shape)), (count, *shape)
    ).copy()


def test_npz_split_without_test_path(tmp_path: Path) -> None:
    x = indexed_images(50)
    y = np.repeat(np.arange(5), 10)
    np.savez(tmp_path / "set.npz", x=x, y=y)
    config = DataConfig(name="npz", path=str(tmp_path / "set.npz"), test_fraction=0.2)
    train, test = load_images(config, "train"), load_images(config, "test")
    assert train.images.shape == (40, 1, 6, 6) and test.images.shape == (10, 1, 6, 6)
    train_rows = train.images[:, 0, 0, 0].numpy()
    test_rows = test.images[:, 0, 0, 0].numpy()
    assert not set(train_rows) & set(test_rows)
    assert sorted([*train_rows, *test_rows]) == list(range(50))
    assert np.array_equal(train.labels.numpy(), y[train_rows])
    assert np.bincount(test.labels.numpy()).tolist() == [2] * 5
    assert train.num_classes == test.num_classes == 5
    assert torch.equal(load_images(config, "test").images, test.images)


def test_npz_with_test_path_channels_last(tmp_path: Path) -> None:
    rng = np.random.default_rng(6)
    x_train = rng.integers(0, 256, size=(4, 5, 7, 3), dtype=np.uint8)
    x_test = rng.integers(0, 256, size=(2, 5, 7, 3), dtype=np.uint8)
    np.savez(tmp_path / "train.npz", x=x_train, y=np.array([0, 1, 1, 0], np.int32))
    np.savez_compressed(tmp_path / "test.npz", x=x_test, y=np.array([3, 0], np.uint8))
    config = DataConfig(
        name="npz", path=str(tmp_path / "train.npz"), test_path=str(tmp_path / "test.npz")
    )
    train, test = load_images(config, "train"), load_images(config, "test")
    assert train.images.shape == (4, 3, 5, 7) and test.images.shape == (2, 3, 5, 7)
    assert np.array_equal(test.images.permute(0, 2, 3, 1).numpy(), x_test)
    assert test.labels.tolist() == [3, 0] and test.labels.dtype == torch.int64
    assert train.num_classes == test.num_classes == 4  # labels of both files count


@pytest.mark.parametrize(
    ("arrays", "expect"),
    [
        ({"x": np.zeros((4, 3, 3), np.uint8)}, "lacks key(s) y"),
        ({"x": np.zeros((4, 3, 3), np.float32), "y": np.zeros(4, int)}, "not uint8"),
        ({"x": np.zeros((4, 3), np.uint8), "y": np.zeros(4, int)}, "shape"),
        ({"x": np.zeros((4, 3, 3, 2), np.uint8), "y": np.zeros(4, int)}, "shape"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.zeros(3, int)}, "3 labels for 4"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.zeros(4, float)}, "y is float64"),
        ({"x": np.zeros((4, 3, 3), np.uint8), "y": np.array([0, 1, -1, 0])}, "negative"),
        (
            {"x": np.zeros((4, 3, 3), np.uint8), "y": np.array([0, 1, "a", None], object)},
            "y is unreadable",
        ),
    ],
)
def test_npz_bad_contents(tmp_path: Path, arrays: dict, expect: str) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    message = user_error(load_images, DataConfig(name="npz", path=str(path)), "train")
    assert expect in message and str(path) in message


def test_npz_missing_or_unset(tmp_path: Path) -> None:
    assert "data.path" in user_error(load_images, DataConfig(name="npz"), "train")
    missing = tmp_path / "nope.npz"
    message = user_error(load_images, DataConfig(name="npz", path=str(missing)), "train")
    assert str(missing) in message and "keys x" in message
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    assert "junk.npz" in user_error(
        load_images, DataConfig(name="npz", path=str(tmp_path / "junk.npz")), "train"
    )


# ---------------------------------------------------------------- resize, limits, statistics


def test_limit_is_fixed_seed0_subset_and_resize(tmp_path: Path) -> None:
    x = indexed_images(60, (4, 4))
    np.savez(tmp_path / "train.npz", x=x, y=np.arange(60) % 3)
    np.savez(tmp_path / "test.npz", x=x[:20], y=np.arange(20) % 3)
    config = DataConfig(
        name="npz",
        path=str(tmp_path / "train.npz"),
        test_path=str(tmp_path / "test.npz"),
        image_size=9,
        limit_train=7,
        limit_test=50,  # more than there are: everything is kept
    )
    train = load_images(config, "train")
    assert train.images.shape == (7, 1, 9, 9) and train.images.dtype == torch.uint8
    expected = torch.randperm(60, generator=torch.Generator().manual_seed(0))[:7].sort().values
    # Constant images stay exactly constant through the bilinear resize.
    assert torch.equal(train.images[:, 0, 4, 4].long(), expected)
    assert torch.equal(train.images, train.images[:, :, :1, :1].expand(-1, -1, 9, 9))
    assert torch.equal(train.labels, expected % 3)
    assert torch.equal(load_images(config, "train").images, train.images)
    assert len(load_images(config, "test")) == 20


def test_digits_resize_and_limit() -> None:
    data = load_images(DataConfig(image_size=16, limit_train=100), "train")
    assert data.images.shape == (100, 1, 16, 16) and data.labels.shape == (100,)
    assert data.images.is_contiguous()


def test_channel_stats_known_values() -> None:
    images = torch.zeros((2, 3, 2, 2), dtype=torch.uint8)
    images[1, 0] = 255  # channel 0: half the pixels black, half white
    images[:, 1] = 51  # channel 1: constant 0.2
    images[:, 2, :, 0] = 255  # channel 2: stripes
    data = ImageSet(
        images=images, labels=torch.zeros(2, dtype=torch.int64), num_classes=1, name="t"
    )
    mean, std = channel_stats(data)
    assert mean == pytest.approx([0.5, 0.2, 0.5])
    assert std == pytest.approx([0.5, 0.0, 0.5], abs=1e-7)
    assert all(isinstance(value, float) for value in mean + std)


def test_channel_stats_matches_torch_and_caps_subset() -> None:
    digits = load_images(DataConfig(), "train")
    mean, std = channel_stats(digits)
    pixels = digits.images.double() / 255
    assert mean[0] == pytest.approx(pixels.mean().item())
    assert std[0] == pytest.approx(pixels.std(unbiased=False).item())

    # 12000 images, the first 10000 black and the rest white: a capped seed-0 random subset
    # keeps about 1/6 white, whereas "the first 10000" would give a mean of exactly 0.
    many = torch.zeros((12000, 1, 1, 1), dtype=torch.uint8)
    many[10000:] = 255
    data = ImageSet(
        images=many, labels=torch.zeros(12000, dtype=torch.int64), num_classes=1, name="m"
    )
    mean, _ = channel_stats(data)
    keep = torch.randperm(12000, generator=torch.Generator().manual_seed(0))[:10000]
    assert mean[0] == pytest.approx((keep >= 10000).double().mean().item())
    assert 0.15 < mean[0] < 0.18
