"""Progress bars for long work (tqdm on stderr; silent when stderr is not a terminal)."""

from __future__ import annotations

from typing import Iterable, TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T] | None = None, desc: str = "", unit: str = "it", total: int | None = None,
             enabled: bool = True) -> tqdm:
    """A bar over ``items``, or with ``items`` None a bar of ``total`` steps advanced by ``update()``."""
    return tqdm(items, desc=desc, unit=unit, total=total, disable=None if enabled else True,
                dynamic_ncols=True, mininterval=0.5)
