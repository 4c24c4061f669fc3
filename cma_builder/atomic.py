"""Atomic text files (a complete file or none) created with the permissions of any other file
the process writes: 0666 less the umask (tempfile.mkstemp alone would leave them 0600)."""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from cma_builder.errors import CmaError


def current_umask() -> int:
    """The process umask, read without changing it (os.umask would, briefly, for every thread)."""
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | os.PathLike, newline: str | None = None):
    """Write text to a temporary file beside ``path``; it replaces ``path`` when the block ends
    without an exception and is removed otherwise."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent if str(path.parent) else ".")
    except OSError as exc:
        raise _renamed(exc, path) from None
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "w", newline=newline, encoding="utf-8") as fh:
            yield fh
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and exc.filename in (None, tmp) and exc.errno is not None:
            raise _renamed(exc, path) from None
        raise


def _renamed(exc: OSError, path: Path) -> OSError:
    """The same error, naming the file the caller asked for rather than our hidden temporary one."""
    return type(exc)(exc.errno, exc.strerror, str(path))


def _label(path: Path, option: str | None) -> str:
    return f"{option} {path}" if option else str(path)


def _probe(folder: Path, what: str) -> None:
    """Create and remove a file in ``folder``: the one test that is right for root (to whom
    os.access always says yes), for read-only mounts and for pseudo file systems such as /proc."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise CmaError(f"{what}: cannot write in {folder} (permission denied)")
    try:
        fd, name = tempfile.mkstemp(prefix=".cma-write-test-", dir=folder)
    except OSError as exc:
        raise CmaError(f"{what}: cannot write in {folder} ({exc.strerror or exc.__class__.__name__})") from None
    os.close(fd)
    os.unlink(name)


def _nearest_existing(path: Path) -> Path:
    existing = path.absolute()
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    return existing


def check_output_file(path: str | os.PathLike, option: str | None = None, example: str = "out.json") -> Path:
    """Fail early (CmaError, one line naming ``option`` and ``path``) unless a file can be written
    at ``path``: not a folder or other non-regular file (/dev/null would be replaced by a file), in a
    folder that accepts new files or can be created (the writer creates it; see ensure_parent).
    Changes nothing on disk. Returns the path."""
    path = Path(path).expanduser()
    what = _label(path, option)
    if path.is_dir():
        raise CmaError(f"{what}: is a folder; expected a file name such as {path / example}")
    if path.exists() and not path.is_file():
        raise CmaError(f"{what}: exists and is not a regular file; refusing to replace it")
    existing = _nearest_existing(path.parent if str(path.parent) else Path("."))
    if not existing.is_dir():
        raise CmaError(f"{what}: cannot create its folder, {existing} is not a folder")
    _probe(existing, what)
    return path


def ensure_parent(path: str | os.PathLike) -> Path:
    """Create the folder of a file about to be written (check_output_file said it can be)."""
    path = Path(path).expanduser()
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def check_output_dir(path: str | os.PathLike, option: str | None = None) -> Path:
    """Fail early (CmaError) unless ``path`` is a folder that accepts new files or can be created
    (its nearest existing ancestor is a writable folder). Changes nothing on disk."""
    path = Path(path).expanduser()
    what = _label(path, option)
    if path.exists() and not path.is_dir():
        raise CmaError(f"{what}: is a file; expected a folder")
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise CmaError(f"{what}: cannot create the folder, {existing} is not a folder")
    _probe(existing, what)
    return path
