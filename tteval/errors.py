"""One exception type for user-facing errors: the CLI prints its message on one line and exits non-zero."""


class TtevalError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback shown)."""


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty): for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
