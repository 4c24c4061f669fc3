"""A pool of persistent Blender worker processes (blender_scripts.worker), driven from here.

Each worker imports bpy once and renders many objects. A worker that crashes (its pipe hits
EOF), or that exceeds the per-object timeout (it is SIGKILLed), is replaced; its object is
reported as failed with the reason and the run goes on. A worker is also replaced after
``recycle_after`` objects or when its resident memory exceeds ``max_rss_mb``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Iterator

from cma_builder.errors import CmaError
from cma_builder.render.scratch import make_scratch, remove_stale
from cma_builder.render.settings import RenderOptions, RenderSettings

STARTUP_TIMEOUT = 180.0
MAX_START_FAILURES = 3


@dataclass
class Outcome:
    task: dict
    status: str  # done | failed
    arrays: dict | None = None
    error: str = ""
    traceback: str = ""  # the worker's Python traceback when the object raised (kept in the run log)
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    worker: str = ""
    rss_mb: float = 0.0  # the worker's resident memory after this object


SCRATCH_PREFIX = "cma-render-"
# Blender 5 prefixes its log lines with the time and a channel: "00:00.598  render    | Saved: '...'"
_LOG_PREFIX = re.compile(r"^\d+:\d+(?::\d+)?\.\d+\s+\S+\s+\|\s?")
_CHATTER = ("Fra:", "Saved:", "Time:", "OBJ import of", "Read blend:", "Blender quit", "Writing:")
_ERROR = re.compile(r"error|exception|fatal|abort|assert|segmentation|out of memory|killed", re.I)


def crash_detail(text: str) -> str:
    """What a dead worker's log says about why: its last error-like line (Blender's "Error: ...",
    Python's "Fatal Python error: ..."), else its last line that is not chatter."""
    lines = log_lines(text)
    errors = [line for line in lines if _ERROR.search(line)]
    return (errors or lines or [""])[-1][:300]


def log_lines(text: str) -> list[str]:
    """A worker log's lines that say something: Blender's time/channel prefix stripped, progress
    and file-written chatter dropped."""
    out = []
    for line in text.splitlines():
        line = _LOG_PREFIX.sub("", line.strip()).strip()
        if line and not line.startswith(_CHATTER):
            out.append(line)
    return out


def _death(code: int | None) -> str:
    if code is None:
        return "worker stopped responding"
    if code < 0:
        try:
            return f"worker died with signal {signal.Signals(-code).name}"
        except ValueError:
            return f"worker died with signal {-code}"
    return f"worker exited with code {code}"


class Worker:
    def __init__(self, name: str, setup: dict, scratch: Path):
        self.name = name
        self.scratch = scratch / name
        self.scratch.mkdir(parents=True)
        self.log_path = self.scratch.parent / f"{name}.log"
        to_worker_r, to_worker_w = os.pipe()
        from_worker_r, from_worker_w = os.pipe()
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "blender_scripts.worker", "--fd-in", str(to_worker_r),
                 "--fd-out", str(from_worker_w)],
                pass_fds=(to_worker_r, from_worker_w), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True)  # Ctrl-C reaches the driver only; it stops the workers
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.tx = Connection(to_worker_w, readable=False)
        self.rx = Connection(from_worker_r, writable=False)
        self.tx.send(dict(setup, scratch=str(self.scratch)))
        self.ready = False
        self.task: dict | None = None
        self.started = False  # the worker acknowledged self.task
        self.deadline = 0.0
        self.count = 0
        self.rss_mb = 0.0

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 3) -> str:
        return " | ".join(log_lines(self.log_text())[-lines:])

    def send(self, task: dict, timeout: float) -> None:
        self.task = task
        self.started = False
        self.deadline = time.monotonic() + timeout
        self.tx.send({k: v for k, v in task.items() if k in ("model_id", "obj_path")})

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def stop(self) -> None:
        try:
            self.tx.send(None)
            self.proc.wait(timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            pass
        self.kill()

    def _close(self) -> None:
        for conn in (self.tx, self.rx):
            try:
                conn.close()
            except OSError:
                pass
        shutil.rmtree(self.scratch, ignore_errors=True)


class WorkerPool:
    def __init__(self, settings: RenderSettings, options: RenderOptions):
        self.options = options
        self.setup = {"settings": settings.to_dict(), "device": options.device, "threads": options.threads_per_worker}
        remove_stale(SCRATCH_PREFIX)  # left by runs that were killed
        self.scratch = make_scratch(SCRATCH_PREFIX)
        self.workers: list[Worker] = []
        self._started = 0
        self._start_failures = 0
        self.device = ""

    def _start(self) -> Worker:
        self._started += 1
        worker = Worker(f"worker-{self._started}", self.setup, self.scratch)
        self.workers.append(worker)
        return worker

    def _replace(self, worker: Worker) -> None:
        self.workers.remove(worker)
        worker.kill()
        self._start()

    def _await_ready(self, worker: Worker) -> None:
        if not worker.rx.poll(STARTUP_TIMEOUT):
            worker.kill()
            raise CmaError(f"Blender worker did not start within {STARTUP_TIMEOUT:.0f} s: {worker.log_tail()}")
        try:
            msg = worker.rx.recv()
        except (EOFError, OSError):
            worker.proc.wait()
            self._start_failures += 1
            reason = f"{_death(worker.proc.returncode)}: {worker.log_tail()}"
            self.workers.remove(worker)
            worker.kill()
            if self._start_failures >= MAX_START_FAILURES or not self.device:
                raise CmaError(f"Blender worker failed to start ({reason})") from None
            self._start()
            return
        worker.ready = True
        worker.rss_mb = msg.get("rss_mb", 0.0)
        self.device = msg.get("device", "")

    def run(self, tasks: Iterator[dict], on_outcome: Callable[[Outcome], None]) -> None:
        """Render every task; ``on_outcome`` is called once per task, in completion order."""
        pending = iter(tasks)
        requeued: list[dict] = []  # tasks whose worker died before starting them
        exhausted = False
        while len(self.workers) < self.options.workers:
            self._start()
        while True:
            for w in [w for w in self.workers if not w.ready]:
                self._await_ready(w)
            for w in list(self.workers):
                if w.ready and w.task is None and (requeued or not exhausted):
                    task = requeued.pop() if requeued else next(pending, None)
                    if task is None:
                        exhausted = True
                        continue
                    try:
                        w.send(task, self.options.timeout)
                    except OSError:  # it died while idle (e.g. killed for memory): replace it
                        requeued.append(task)
                        self._replace(w)
            busy = [w for w in self.workers if w.task is not None]
            if not busy:
                if exhausted and not requeued:
                    return
                continue
            timeout = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            ready = wait([w.rx for w in busy], timeout=timeout)
            now = time.monotonic()
            for w in busy:
                if w.rx in ready:
                    self._receive(w, on_outcome, requeued)
                elif now >= w.deadline:
                    task = w.task
                    self._replace(w)
                    on_outcome(Outcome(task, "failed", error=f"timed out after {self.options.timeout:g} s "
                                       "(worker killed)", worker=w.name))

    def _receive(self, w: Worker, on_outcome: Callable[[Outcome], None], requeued: list[dict]) -> None:
        task = w.task
        try:
            msg = w.rx.recv()
        except (EOFError, OSError):
            w.proc.wait()
            reason = _death(w.proc.returncode)
            tail = crash_detail(w.log_text())
            self._replace(w)
            if not w.started:  # it died before reading this task: not the task's fault
                requeued.append(task)
                return
            on_outcome(Outcome(task, "failed", error=f"{reason} while rendering" + (f" ({tail})" if tail else ""),
                               worker=w.name))
            return
        if msg.get("type") == "started":
            w.started = True
            return
        w.task = None
        w.count += 1
        w.rss_mb = msg.get("rss_mb", 0.0)
        on_outcome(Outcome(task, msg["status"], arrays=msg.get("arrays"), error=msg.get("error", ""),
                           traceback=msg.get("traceback", ""),
                           warnings=msg.get("warnings", []), timings=msg.get("timings", {}),
                           worker=f"{w.name} (pid {w.proc.pid})", rss_mb=w.rss_mb))
        if w.count >= self.options.recycle_after or w.rss_mb > self.options.max_rss_mb:
            self.workers.remove(w)
            w.stop()
            self._start()

    def close(self, kill: bool = False) -> None:
        for w in self.workers:
            w.kill() if kill else w.stop()
        self.workers = []
        shutil.rmtree(self.scratch, ignore_errors=True)
