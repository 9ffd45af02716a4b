"""Errors a user can fix. The CLI turns them into one stderr line and exit code 2."""


class HsslUserError(Exception):
    """A mistake in the user's input (recipe, option, file): the message names it and the fix."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


# An error line quotes user input (a path, a value, a recipe line) and input can be a whole
# file: every message is cut to MESSAGE_LIMIT characters, a quoted value to QUOTE_LIMIT.
MESSAGE_LIMIT = 500
QUOTE_LIMIT = 120
CUT_MARK = " [...] "


def clip(text: str, limit: int = QUOTE_LIMIT) -> str:
    """``text`` when it has at most ``limit`` characters, else its start and its end (where
    a message names the fix) around :data:`CUT_MARK`."""
    if len(text) <= limit:
        return text
    head = max(1, (limit - len(CUT_MARK)) * 2 // 3)
    tail = max(0, limit - len(CUT_MARK) - head)
    return text[:head] + CUT_MARK + text[len(text) - tail :]


def one_line(err: BaseException | str, limit: int = MESSAGE_LIMIT) -> str:
    """A message on one line of at most ``limit`` printable characters (control characters
    escaped, so quoted input cannot move the cursor or colour the terminal): for the CLI's
    error line and for a user error that quotes a library's words."""
    text = " ".join(clip(str(err), 4 * limit).split())  # clipped first: bounded work
    text = "".join(
        char if char.isprintable() else char.encode("unicode_escape").decode("ascii")
        for char in text
    )
    return clip(text, limit) or type(err).__name__
