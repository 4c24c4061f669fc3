"""The one error type the CLI turns into a one-line message (no traceback)."""


class TrainError(Exception):
    """A user-facing problem: bad input, missing data, unknown name. The message is one line."""
