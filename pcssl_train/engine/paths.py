"""Paths checked before any work starts. Every pcssl-train command that writes calls
``check_output_dir`` or ``check_output_file`` first (cma-build's checks, one home for both CLIs:
:mod:`cma_builder.atomic`), so an unwritable ``--out`` is a one-line error instead of a traceback
after minutes of rendering or training. They change nothing on disk."""

from __future__ import annotations

import os
from pathlib import Path

from cma_builder import atomic
from cma_builder.paths import check_inside  # noqa: F401  (a run writes only inside its folder)


def check_output_dir(path: str | os.PathLike, option: str | None = "--out") -> Path:
    """A folder that accepts new files or can be created (CmaError naming ``option`` otherwise)."""
    return atomic.check_output_dir(path, option)


def check_output_file(path: str | os.PathLike, option: str | None = "--out", example: str = "out.json") -> Path:
    """A file that can be written: not a folder, in a folder that accepts files or can be created."""
    return atomic.check_output_file(path, option, example)
