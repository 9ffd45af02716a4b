"""``data.test_path`` is checked like ``data.path``: nothing is ever unpickled, and a bad
test file fails when the train split loads (at pretrain), not at the probe."""

from pathlib import Path

import numpy as np
import pytest

from hssl_cli.config import DataConfig
from hssl_cli.data import load_images
from hssl_cli.errors import HsslUserError


class Tripwire:
    """Unpickling one of these creates a file: proof that pickled data ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def good_arrays(count: int = 6, channels: int | None = None) -> dict[str, np.ndarray]:
    shape = (count, 4, 4) if channels is None else (count, 4, 4, channels)
    return {"x": np.zeros(shape, np.uint8), "y": np.arange(count) % 2}


def refused(config: DataConfig, split: str) -> str:
    with pytest.raises(HsslUserError) as info:
        load_images(config, split)
    return str(info.value)


@pytest.mark.parametrize("key", ["x", "y"])
@pytest.mark.parametrize("split", ["train", "test"])
def test_object_arrays_in_test_path_are_refused_unopened(tmp_path: Path, key, split) -> None:
    marker = tmp_path / "unpickled"
    arrays = good_arrays()
    arrays[key] = np.array([Tripwire(marker)] * 6, dtype=object)
    np.savez(tmp_path / "train.npz", **good_arrays())
    np.savez(tmp_path / "test.npz", **arrays)
    config = DataConfig(
        name="npz", path=str(tmp_path / "train.npz"), test_path=str(tmp_path / "test.npz")
    )
    message = refused(config, split)
    assert str(tmp_path / "test.npz") in message
    assert ("object array" if key == "x" else "y is unreadable") in message
    assert not marker.exists()


def test_bad_test_images_fail_when_the_train_split_loads(tmp_path: Path) -> None:
    np.savez(tmp_path / "train.npz", **good_arrays())
    config = DataConfig(
        name="npz", path=str(tmp_path / "train.npz"), test_path=str(tmp_path / "test.npz")
    )
    cases = [
        ({"x": np.zeros((6, 4, 4), np.float32), "y": np.zeros(6, int)}, "x is float32"),
        ({"x": np.zeros((6, 4), np.uint8), "y": np.zeros(6, int)}, "x has shape (6, 4)"),
        ({"x": np.zeros((5, 4, 4), np.uint8), "y": np.zeros(6, int)}, "6 labels for 5 images"),
        (good_arrays(channels=3), "x has 3 channel(s) but the other file"),
    ]
    for arrays, problem in cases:
        np.savez(tmp_path / "test.npz", **arrays)
        message = refused(config, "train")
        assert problem in message and "test.npz" in message, message


def test_matching_files_load_and_the_train_file_is_checked_for_the_test_split(
    tmp_path: Path,
) -> None:
    np.savez(tmp_path / "train.npz", **good_arrays(channels=1))
    np.savez(tmp_path / "test.npz", **good_arrays(4))
    config = DataConfig(
        name="npz", path=str(tmp_path / "train.npz"), test_path=str(tmp_path / "test.npz")
    )
    assert len(load_images(config, "train")) == 6 and len(load_images(config, "test")) == 4
    np.savez(tmp_path / "train.npz", **good_arrays(channels=3))
    assert "the other file" in refused(config, "test")
