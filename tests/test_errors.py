"""Error lines stay one short, printable line whatever the message quotes."""

import pytest
import typer
from typer.testing import CliRunner

from hssl_cli.cli.options import report_errors
from hssl_cli.errors import (
    CUT_MARK,
    MESSAGE_LIMIT,
    HsslUserError,
    TrainingDiverged,
    clip,
    one_line,
)


def test_clip_keeps_short_text_and_both_ends_of_long_text() -> None:
    assert clip("short", 10) == "short"
    cut = clip("a" * 100 + "b" * 100, 60)
    assert len(cut) == 60 and cut.startswith("a") and cut.endswith("b") and CUT_MARK in cut


def test_one_line_flattens_escapes_and_caps() -> None:
    assert one_line(ValueError("two\nlines\t and  spaces")) == "two lines and spaces"
    assert one_line(ValueError("")) == "ValueError"
    assert one_line("colour \x1b[31mred") == "colour \\x1b[31mred"  # no terminal escape
    huge = one_line(HsslUserError("x" * 50_000_000 + " the fix"))
    assert len(huge) == MESSAGE_LIMIT and huge.endswith("the fix")


@pytest.mark.parametrize("error, code", [(HsslUserError, 2), (TrainingDiverged, 1)])
def test_report_errors_prints_one_capped_line(error: type, code: int) -> None:
    app = typer.Typer()

    @app.command()
    @report_errors
    def fail(text: str) -> None:
        raise error(f"bad value {text!r}\nsecond line; fix it like this")

    result = CliRunner().invoke(app, ["y" * 100_000])
    assert result.exit_code == code
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and len(lines[0]) <= len("error: ") + MESSAGE_LIMIT
    assert lines[0].startswith("error: bad value 'yyy") and lines[0].endswith("like this")
