"""Test-only fault injection, driven by the CMA_FAULTS environment variable (unset in normal use).

Comma-separated entries ``kind:target``:
- ``segfault:<model id>`` / ``hang:<model id>`` / ``exit:<model id>``: the render worker really
  segfaults, sleeps forever, or exits before rendering that model;
- ``sigkill-mid:<model id>``: the worker SIGKILLs itself after rendering the first view of that
  model (mid-render, with Blender's scene loaded);
- ``sigkill-once:<model id>``: the same, but only the first time that model is rendered (a
  marker file in ``$CMA_FAULTS_STATE`` remembers it): a retry then succeeds;
- ``exit-idle:<model id>``: the worker exits right after sending that model's result (it dies
  while idle; the task sent to it next must be handed to another worker, not failed);
- ``kill-in-shard-write:<n>``: the driver SIGKILLs itself while writing its n-th shard
  (after some arrays are on disk, before the shard is committed);
- ``kill-in-export:<model id>``: ``cma-build export`` SIGKILLs itself after writing part of that
  model's files (before they are renamed into place).
"""

from __future__ import annotations

import ctypes
import os
import signal
import time


def _entries() -> list[tuple[str, str]]:
    raw = os.environ.get("CMA_FAULTS", "")
    return [tuple(e.split(":", 1)) for e in raw.split(",") if ":" in e]


_current: str | None = None  # the model the worker is rendering (set by before_render)


def before_render(model_id: str) -> None:
    global _current
    _current = model_id
    for kind, target in _entries():
        if target != model_id:
            continue
        if kind == "segfault":
            ctypes.string_at(0)  # a real SIGSEGV
        elif kind == "hang":
            time.sleep(10**6)
        elif kind == "exit":
            os._exit(3)


def between_views() -> None:
    """``sigkill-mid:<model id>``: called by the renderer after each view."""
    if _current is None:
        return
    entries = _entries()
    if ("sigkill-mid", _current) in entries:
        os.kill(os.getpid(), signal.SIGKILL)
    if ("sigkill-once", _current) in entries:
        marker = os.path.join(os.environ.get("CMA_FAULTS_STATE", "/tmp"), f"cma-fault-{_current}")
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), signal.SIGKILL)


def after_result(model_id: str) -> None:
    """``exit-idle:<model id>``: the worker exits right after answering for that model."""
    if ("exit-idle", model_id) in _entries():
        os._exit(0)


def in_shard_write(shard_number: int) -> None:
    for kind, target in _entries():
        if kind == "kill-in-shard-write" and int(target) == shard_number:
            os.kill(os.getpid(), signal.SIGKILL)


def in_export(model_id: str) -> None:
    if ("kill-in-export", model_id) in _entries():
        os.kill(os.getpid(), signal.SIGKILL)
