"""Output folders and files are checked before the work, by writing, not by mode bits."""

import os
from pathlib import Path

import pytest

from hssl_cli.errors import HsslUserError
from hssl_cli.output_paths import check_output_file, check_output_folder


def refusal(check, *args) -> str:
    with pytest.raises(HsslUserError) as info:
        check(*args)
    message = str(info.value)
    assert "\n" not in message and len(message) < 400
    return message


def test_writable_places_pass_and_nothing_is_left_behind(tmp_path: Path) -> None:
    (tmp_path / "existing").mkdir()
    for path in (tmp_path / "existing", tmp_path / "new" / "deeper"):
        assert check_output_folder(path) == path
    assert check_output_file(tmp_path / "a" / "b" / "plot.png", "--plot") == (
        tmp_path / "a" / "b" / "plot.png"
    )
    assert sorted(os.listdir(tmp_path)) == ["existing"]  # nothing made, no probe file left
    assert os.listdir(tmp_path / "existing") == []


def test_a_file_on_the_way_is_refused(tmp_path: Path) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("a file\n")
    for path in (a_file, a_file / "run", a_file / "run" / "deeper"):
        message = refusal(check_output_folder, path, "--out")
        assert message.startswith(f"--out {path}: {a_file} is a file, not a folder")
    message = refusal(check_output_file, a_file / "plot.png", "--plot")
    assert f"{a_file} is a file, not a writable folder" in message
    assert "is a folder" in refusal(check_output_file, tmp_path, "--plot")


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_proc_is_refused_even_for_root() -> None:
    """Root passes every permission check, yet cannot create files in /proc."""
    assert "cannot write in /proc" in refusal(check_output_folder, Path("/proc/hssl-x"), "--out")
    assert "cannot write in /proc" in refusal(check_output_file, Path("/proc/x.png"), "--plot")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes in read-only folders")
def test_read_only_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        message = refusal(check_output_folder, locked / "run", "--out")
    finally:
        locked.chmod(0o700)
    assert f"cannot write in {locked}" in message


def test_too_long_a_name_and_a_dangling_link(tmp_path: Path) -> None:
    message = refusal(check_output_folder, tmp_path / ("x" * 300) / "run", "--out")
    assert "is longer than the" in message and "[...]" in message  # the path is cut
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "nowhere" / "at-all")
    assert "symbolic link to nothing" in refusal(check_output_folder, link / "run", "--out")
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    assert "symbolic link to nothing" in refusal(check_output_file, loop / "p.png", "--plot")
