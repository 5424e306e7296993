"""One exception type for user-facing errors: the CLI prints its message on one line and exits non-zero."""


class TtevalError(Exception):
    """A problem with the user's input or environment, explained in one line (no traceback shown)."""
