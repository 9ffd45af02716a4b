"""Atomic writes: the content lands whole, a failure leaves the old file and no temp file."""

import json
import os
from pathlib import Path

import pytest

from hssl_cli import io as hssl_io
from hssl_cli.io import (
    atomic_append_line,
    atomic_path,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)


def test_writers_write_the_content_and_create_folders(tmp_path: Path) -> None:
    atomic_write_bytes(tmp_path / "a" / "b" / "data.bin", b"\x00\x01\xff")
    assert (tmp_path / "a" / "b" / "data.bin").read_bytes() == b"\x00\x01\xff"
    atomic_write_text(tmp_path / "text.md", "mean ± std\n")
    assert (tmp_path / "text.md").read_text(encoding="utf-8") == "mean ± std\n"
    atomic_write_json(tmp_path / "value.json", {"top1": 91.5, "full": {"top1": 92.0}}, indent=1)
    assert json.loads((tmp_path / "value.json").read_text()) == {
        "top1": 91.5,
        "full": {"top1": 92.0},
    }
    assert (tmp_path / "value.json").read_text() == json.dumps(
        {"top1": 91.5, "full": {"top1": 92.0}}, indent=1
    )
    assert sorted(os.listdir(tmp_path)) == ["a", "text.md", "value.json"]


def test_a_new_file_replaces_the_old_one(tmp_path: Path) -> None:
    path = tmp_path / "probe.json"
    atomic_write_text(path, "old, and longer than the new one")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(tmp_path) == ["probe.json"]


def test_files_get_the_mode_open_gives(tmp_path: Path) -> None:
    (tmp_path / "plain").write_text("x")
    atomic_write_text(tmp_path / "atomic", "x")
    assert os.stat(tmp_path / "atomic").st_mode == os.stat(tmp_path / "plain").st_mode


class Broken(Exception):
    pass


def test_failure_inside_atomic_path_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.safetensors"
    path.write_bytes(b"old")
    with pytest.raises(Broken), atomic_path(path) as temporary:
        assert temporary.parent == tmp_path and temporary.exists()
        temporary.write_bytes(b"half a fi")
        raise Broken
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["checkpoint.safetensors"]


def test_failure_of_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(Broken), atomic_path(tmp_path / "new.json") as temporary:
        temporary.write_text("{")
        raise Broken
    assert os.listdir(tmp_path) == []


def test_failed_fsync_or_rename_keeps_the_old_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "results.csv"
    atomic_write_text(path, "old\n")

    def no_space(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hssl_io.os, "fsync", no_space)
    with pytest.raises(OSError, match="No space"):
        atomic_write_text(path, "new\n")
    monkeypatch.undo()

    def refused(source, target) -> None:
        raise PermissionError("rename refused")

    monkeypatch.setattr(hssl_io.os, "replace", refused)
    with pytest.raises(PermissionError):
        atomic_write_bytes(path, b"new\n")
    assert path.read_text() == "old\n"
    assert os.listdir(tmp_path) == ["results.csv"]


def test_unserialisable_json_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "timing.json"
    atomic_write_json(path, {"wall_seconds": 1.0})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"wall_seconds": object()})
    assert json.loads(path.read_text()) == {"wall_seconds": 1.0}
    assert os.listdir(tmp_path) == ["timing.json"]


def test_append_line_adds_whole_lines(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "metrics.jsonl"
    atomic_append_line(path, json.dumps({"epoch": 1}))
    atomic_append_line(path, json.dumps({"epoch": 2}))
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'

    def no_space(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(hssl_io.os, "fsync", no_space)
    with pytest.raises(OSError):
        atomic_append_line(path, json.dumps({"epoch": 3}))
    assert path.read_text() == '{"epoch": 1}\n{"epoch": 2}\n'
    assert os.listdir(tmp_path) == ["metrics.jsonl"]
