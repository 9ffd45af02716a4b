"""Damaged run files are refused in one line: bit flips, truncation, absurd headers,
foreign files; files written before digests existed still load."""

import json
import struct

import pytest
import safetensors.torch
import torch

from hssl_cli.checkpoint import (
    CHECKPOINT_FORMAT,
    TRAIN_STATE_FORMAT,
    UNCHECKED_FORMATS,
    atomic_save,
    load_train_state,
    read_checkpoint,
    read_safetensors,
    save_train_state,
)
from hssl_cli.errors import HsslUserError
from hssl_cli.integrity import DIGEST_KEY, MAX_HEADER_BYTES, content_digest

METADATA = {
    "format": CHECKPOINT_FORMAT,
    "recipe": "method: {name: hssl}\n",
    "epoch": "1",
    "feature_shapes": json.dumps({"input": [1, 8, 8]}),
}


def small_file(tmp_path):
    """A checkpoint-format file small enough to flip every one of its bits."""
    tensors = {
        "backbone.w": torch.arange(6.0),
        "backbone.half": torch.ones(2, 2, dtype=torch.bfloat16),
        "objective.step": torch.tensor(3),
    }
    path = tmp_path / "checkpoint.safetensors"
    atomic_save(tensors, METADATA, path)
    return path, tensors


def header_and_data(data: bytes) -> tuple[dict, int]:
    (length,) = struct.unpack("<Q", data[:8])
    return json.loads(data[8 : 8 + length]), 8 + length


def test_digest_is_stored_checked_and_hidden(tmp_path):
    path, tensors = small_file(tmp_path)
    header, _ = header_and_data(path.read_bytes())
    assert header["__metadata__"][DIGEST_KEY] == content_digest(tensors, METADATA)
    loaded, metadata = read_safetensors(path, CHECKPOINT_FORMAT)
    assert metadata == METADATA  # the digest is not handed on
    assert set(loaded) == set(tensors)
    assert read_checkpoint(path).epoch == 1


def test_digest_covers_metadata_names_dtypes_shapes_and_bytes():
    tensors = {"a": torch.zeros(4), "b": torch.ones(2, dtype=torch.int64)}
    base = content_digest(tensors, {"epoch": "1"})
    assert content_digest(dict(reversed(tensors.items())), {"epoch": "1"}) == base
    assert content_digest(tensors, {"epoch": "1", DIGEST_KEY: "x"}) == base
    changed = [
        content_digest(tensors, {"epoch": "2"}),
        content_digest({"c": tensors["a"], "b": tensors["b"]}, {"epoch": "1"}),
        content_digest({**tensors, "a": torch.zeros(4, dtype=torch.int32)}, {"epoch": "1"}),
        content_digest({**tensors, "a": torch.zeros(2, 2)}, {"epoch": "1"}),
        content_digest({**tensors, "a": torch.tensor([0.0, 0.0, 0.0, 1e-45])}, {"epoch": "1"}),
    ]
    assert base not in changed and len(set(changed)) == len(changed)


def test_a_bit_flip_in_any_byte_is_refused(tmp_path):
    """Header length, JSON header (names, dtypes, offsets, metadata, the digest itself) and
    tensor bytes: a flipped bit in any byte of the file does not get through (one bit per
    byte, a different one from byte to byte; all eight bits cost eight times the time)."""
    path, _ = small_file(tmp_path)
    data = path.read_bytes()
    flipped = tmp_path / "flipped.safetensors"
    for index in range(len(data)):
        damaged = bytearray(data)
        damaged[index] ^= 1 << (index % 8)
        flipped.write_bytes(damaged)
        with pytest.raises(HsslUserError) as info:
            read_safetensors(flipped, CHECKPOINT_FORMAT)
        message = str(info.value)
        assert str(flipped) in message and "\n" not in message, index


def test_flips_in_a_real_checkpoint_name_the_damage_and_the_fix(tmp_path):
    path, _ = small_file(tmp_path)
    data = path.read_bytes()
    _, data_start = header_and_data(data)
    for index in (data_start + 5, data.index(b'"epoch":"1"') + 9):  # a weight; the epoch
        damaged = bytearray(data)
        damaged[index] ^= 0x01
        path.write_bytes(damaged)
        with pytest.raises(HsslUserError, match="is damaged: its content does not match") as info:
            read_checkpoint(path)
        assert "re-run pretrain or copy the file again" in str(info.value)


def test_missing_digest_in_the_current_format_is_refused(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    safetensors.torch.save_file({"w": torch.zeros(2)}, str(path), metadata=METADATA)
    with pytest.raises(HsslUserError, match=f"lacks the {DIGEST_KEY} of its content"):
        read_checkpoint(path)


def test_files_from_before_digests_still_load(tmp_path):
    path = tmp_path / "checkpoint.safetensors"
    old = {**METADATA, "format": UNCHECKED_FORMATS[CHECKPOINT_FORMAT]}
    safetensors.torch.save_file({"backbone.w": torch.arange(3.0)}, str(path), metadata=old)
    checkpoint = read_checkpoint(path)
    assert checkpoint.epoch == 1 and torch.equal(
        checkpoint.tensors["backbone.w"], torch.arange(3.0)
    )

    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1)
    state = tmp_path / "train_state.safetensors"
    save_train_state(state, optimizer, epoch=2, step=5)
    tensors, metadata = read_safetensors(state, TRAIN_STATE_FORMAT)
    metadata["format"] = UNCHECKED_FORMATS[TRAIN_STATE_FORMAT]
    safetensors.torch.save_file(tensors, str(state), metadata=metadata)  # as 0.1 wrote it
    assert load_train_state(state, optimizer) == (2, 5)


def test_damaged_train_state_says_how_to_go_on(tmp_path):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(3))], lr=0.1)
    path = tmp_path / "train_state.safetensors"
    save_train_state(path, optimizer, epoch=1, step=2)
    data = bytearray(path.read_bytes())
    data[-1] ^= 0x80  # the last byte of the last tensor
    path.write_bytes(data)
    with pytest.raises(HsslUserError, match="is damaged") as info:
        load_train_state(path, optimizer)
    assert "intact copy of the run folder or start a new run" in str(info.value)


@pytest.mark.parametrize("claimed", [MAX_HEADER_BYTES + 1, 2**40, 2**64 - 1])
def test_absurd_header_length_is_refused_before_parsing(tmp_path, claimed):
    path, _ = small_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", claimed) + data[8:])
    with pytest.raises(HsslUserError, match=f"its header claims {claimed:,} bytes") as info:
        read_checkpoint(path)
    assert len(str(info.value)) < 300


def test_header_longer_than_the_file_and_short_files(tmp_path):
    path, _ = small_file(tmp_path)
    data = path.read_bytes()
    path.write_bytes(struct.pack("<Q", len(data)) + data[8:])
    with pytest.raises(HsslUserError, match="but the file has"):
        read_checkpoint(path)
    for size in (0, 3, 7):
        path.write_bytes(data[:size])
        with pytest.raises(HsslUserError, match="too short for a safetensors header"):
            read_checkpoint(path)


def test_huge_metadata_is_never_echoed(tmp_path):
    """A foreign file whose format string is megabytes long: the message quotes a bit of it."""
    path = tmp_path / "foreign.safetensors"
    safetensors.torch.save_file(
        {"w": torch.zeros(2)}, str(path), metadata={"format": "F" * 3_000_000}
    )
    with pytest.raises(HsslUserError, match="not an hssl checkpoint") as info:
        read_checkpoint(path)
    assert len(str(info.value)) < 300


def test_foreign_safetensors_file(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors.torch.save_file({"layer.weight": torch.ones(3, 3)}, str(path))
    with pytest.raises(HsslUserError, match="not an hssl checkpoint \\(format None\\)"):
        read_checkpoint(path)
    with pytest.raises(HsslUserError, match="not an hssl training state"):
        read_safetensors(path, TRAIN_STATE_FORMAT)


@pytest.mark.parametrize(
    "changes",
    [
        {"epoch": "-1"},
        {"epoch": "9" * 5000},
        {"feature_shapes": "[1, 2, 3]"},
        {"feature_shapes": json.dumps({"input": "abc"})},
        {"feature_shapes": json.dumps({"input": [1, 0, 8]})},
        {"feature_shapes": json.dumps({"input": [1, 8, 8.5]})},
        {"recipe": "seed: 1\n" + "#" * 2**20},
    ],
)
def test_metadata_no_intact_checkpoint_holds_is_refused(tmp_path, changes):
    """Edited with the digest recomputed (or from before digests): still one line."""
    path = tmp_path / "checkpoint.safetensors"
    atomic_save({"backbone.w": torch.zeros(2)}, {**METADATA, **changes}, path)
    with pytest.raises(HsslUserError, match="has damaged metadata") as info:
        read_checkpoint(path)
    assert len(str(info.value)) < 400
