"""Scratch folders for render workers (RAM-backed /dev/shm when writable), named after their
owner process so that a later run can remove those whose owner is gone (a killed run leaves
its folder behind): ``<prefix><pid>-<start time>-<random>``."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path

WORKER_PREFIX = "cma-render-"  # a local run's folder (its Blender workers' files)
ACTOR_PREFIX = "cma-ray-"  # a Ray actor's folder


def scratch_parent() -> Path:
    shm = Path("/dev/shm")
    return shm if shm.is_dir() and os.access(shm, os.W_OK) else Path(tempfile.gettempdir())


def _start_time(pid: int) -> int | None:
    """The process's start time (clock ticks after boot), None if there is no such process.
    With the pid it names a process uniquely, even after the pid is reused."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    return int(stat.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start: int) -> bool:
    if Path("/proc/self/stat").exists():
        now = _start_time(pid)
        return now is not None and (start == 0 or now == start)
    try:  # no /proc: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def make_scratch(prefix: str) -> Path:
    """A new scratch folder owned by this process."""
    pid = os.getpid()
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{pid}-{_start_time(pid) or 0}-", dir=scratch_parent()))


def remove_stale(prefix: str) -> list[Path]:
    """Remove this user's scratch folders named ``prefix...`` whose owner process is gone."""
    removed = []
    pattern = re.compile(re.escape(prefix) + r"(\d+)-(\d+)-")
    for d in scratch_parent().glob(f"{prefix}*"):
        m = pattern.match(d.name)
        try:
            mine = d.is_dir() and d.stat().st_uid == os.getuid()
        except OSError:
            continue
        if m and mine and not _alive(int(m.group(1)), int(m.group(2))):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(d)
    return removed


def remove_dead_runs() -> list[Path]:
    """Remove the scratch folders (local runs' and Ray actors') on this machine whose owner process
    is gone. Every ``render`` and ``merge`` calls it first, whatever it then has to do."""
    return remove_stale(WORKER_PREFIX) + remove_stale(ACTOR_PREFIX)
