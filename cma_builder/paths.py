"""Names read from files others made (ids in an index, a method in a checkpoint) turned into paths
safely: a name must be one plain path component, and a path built under a folder must stay in it
once every link on the way is followed. Both CLIs use these before writing anything."""

from __future__ import annotations

import os
import re
from pathlib import Path

from cma_builder.errors import CmaError

MAX_NAME_BYTES = 200  # well below the 255 of every common file system, leaving room for suffixes
_UNSAFE = re.compile(r"[/\\\x00-\x1f\x7f]")


def name_problem(value: object) -> str | None:
    """Why ``value`` is not a safe single path component, or None when it is. Safe: a non-empty
    string of at most MAX_NAME_BYTES bytes (UTF-8) with no slash, backslash or control character,
    not starting with a dot (so neither '.', '..' nor a hidden name)."""
    if not isinstance(value, str):
        return f"is {type(value).__name__}, not text"
    if not value:
        return "is empty"
    bad = _UNSAFE.search(value)
    if bad:
        return f"contains {bad.group()!r}"
    if value.startswith("."):
        return "starts with a dot"
    if len(value.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_name(value: object, what: str) -> str:
    """``value`` if it is a safe single path component (see :func:`name_problem`), else CmaError
    ``WHAT 'VALUE' is not a safe name (WHY)``."""
    problem = name_problem(value)
    if problem:
        raise CmaError(f"{what} {str(value)[:80]!r} is not a safe name ({problem})")
    return value  # type: ignore[return-value]


def inside(root: str | os.PathLike, rel: str | os.PathLike) -> Path:
    """``root / rel``, refused (CmaError) when it leads outside ``root``: a '..' in ``rel``, an
    absolute ``rel``, or a link on the way (the file itself included) pointing elsewhere. Only
    reads the file system; the parts that do not exist yet are taken as written."""
    root = Path(root)
    path = root / rel
    base = root.resolve()
    if Path(rel).is_absolute() or ".." in Path(rel).parts:
        raise CmaError(f"{path}: {str(rel)!r} leads outside {root}")
    resolved = path.resolve()
    if not resolved.is_relative_to(base):
        raise CmaError(f"{path}: a link inside {root} points outside it (to {resolved}); refusing to write "
                       "through it")
    return path


def leads_outside(root: str | os.PathLike | None, path: str | os.PathLike) -> bool:
    """Whether ``path`` (a file a source file refers to: an MTL, a texture, a glTF buffer or image),
    once every link is followed, lies outside ``root`` (the collection the user named; None: no
    limit). Such references are refused: reading them would let a file pick what the toolkit reads."""
    if root is None:
        return False
    return not Path(path).resolve().is_relative_to(Path(root).resolve())


def check_inside(root: str | os.PathLike, rels) -> None:
    """:func:`inside` for each of ``rels`` (every path a command is about to write, checked before
    it writes the first)."""
    for rel in rels:
        inside(root, rel)


def refuse_inside(out: str | os.PathLike, root: str | os.PathLike, option: str = "--out") -> Path:
    """Refuse (CmaError) an output path inside the folder ``root`` (a dataset a command reads): as written,
    or once links are followed (a link inside ``root``, such as shards/ moved to another disk, counts).
    Returns ``out`` made absolute."""
    given = Path(os.path.abspath(Path(out).expanduser()))
    bases = (Path(os.path.abspath(root)), Path(root).resolve())
    if any(path.is_relative_to(base) for path in (given, given.resolve()) for base in bases):
        raise CmaError(f"{option} {out}: inside the dataset {root}; write it outside")
    return given
