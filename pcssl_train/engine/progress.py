"""Progress bars for pcssl-train, by the rule cma-build follows: tqdm on stderr, shown only when stderr
is a terminal unless asked for (``--progress``) or turned off (``--no-progress``)."""

from __future__ import annotations

import sys
from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def tqdm_disable(progress: bool | None, main: bool = True) -> bool | None:
    """tqdm's ``disable`` for a tri-state ``progress``: None -> None (tqdm hides the bar when stderr is
    not a terminal), True -> shown, False -> hidden. Always hidden on non-main DDP ranks."""
    if progress is False or not main:
        return True
    return None if progress is None else False


def progress_bar(items: Iterable[T] | None = None, *, progress: bool | None = None, main: bool = True,
                 **kwargs) -> tqdm:
    """A tqdm bar on stderr over ``items`` (or of ``total=`` steps), shown as ``progress`` says
    (see :func:`tqdm_disable`). ``bar.disable`` is True when it is hidden: print a plain line instead."""
    kwargs.setdefault("dynamic_ncols", True)
    return tqdm(items, disable=tqdm_disable(progress, main), file=sys.stderr, **kwargs)


def epoch_line(bar: tqdm, message: str) -> None:
    """Print ``message`` as one line on stderr when ``bar`` is hidden (a piped log still shows progress)."""
    if bar.disable:
        print(message, file=sys.stderr, flush=True)
