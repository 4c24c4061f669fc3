"""User-facing errors: the CLI prints them as one line and exits with code 2."""


class CmaError(Exception):
    """Bad input or environment; the message names the path and what was expected."""

    exit_code = 2
