"""Errors a user can fix. The CLI turns them into one stderr line and exit code 2."""


class HsslUserError(Exception):
    """A mistake in the user's input (recipe, option, file): the message names it and the fix."""


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; the last good checkpoint is left untouched."""


def one_line(err: BaseException) -> str:
    """An exception's message on one line (for a user error that quotes a library's words)."""
    return " ".join(str(err).split()) or type(err).__name__
