"""A pool of persistent Blender worker processes (blender_scripts.worker), driven from here.

Each worker imports bpy once and renders many objects. A worker that crashes (its pipe hits
EOF), or that exceeds the per-object timeout (it is SIGKILLed), is replaced; its object is
reported as failed with the reason and the run goes on. A worker is also replaced after
``recycle_after`` objects or when its resident memory exceeds ``max_rss_mb``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import subprocess
import sys
from multiprocessing.connection import Connection, wait
from pathlib import Path

from cma_builder.errors import CmaError
from cma_builder.render.messages import Ready, RenderRequest, Result, Setup, Started, Stop
from cma_builder.render.schedule import Lost, Slot, Transport
from cma_builder.render.scratch import WORKER_PREFIX, make_scratch, remove_stale
from cma_builder.render.settings import RenderOptions, RenderSettings

STARTUP_TIMEOUT = 180.0
MAX_START_FAILURES = 3


SCRATCH_PREFIX = WORKER_PREFIX
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


class Worker(Slot):
    """A ``python -m blender_scripts.worker`` process and its two pipes."""

    def __init__(self, name: str, setup: Setup, scratch: Path):
        super().__init__(name)
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
                start_new_session=True,  # Ctrl-C reaches the driver only; it stops the workers
                env=dict(os.environ, TMPDIR=str(self.scratch)))  # Blender's own temp folder too: gone with ours
        os.close(to_worker_r)
        os.close(from_worker_w)
        self.where = f"pid {self.proc.pid}"
        self.tx = Connection(to_worker_w, readable=False)
        self.rx = Connection(from_worker_r, writable=False)
        self.tx.send(dataclasses.replace(setup, scratch=str(self.scratch)))
        self.started = False  # the worker acknowledged its task

    def log_text(self) -> str:
        try:
            return self.log_path.read_text("utf-8", errors="replace")
        except OSError:
            return ""

    def log_tail(self, lines: int = 3) -> str:
        return " | ".join(log_lines(self.log_text())[-lines:])

    def send(self, request: RenderRequest) -> None:
        self.started = False
        self.tx.send(request)

    def death(self) -> str:
        """Why the worker's pipe hit EOF (it is waited for)."""
        self.proc.wait()
        return _death(self.proc.returncode)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self._close()

    def stop(self) -> None:
        try:
            self.tx.send(Stop())
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


class WorkerPool(Transport):
    """Local Blender worker processes, ``options.workers`` of them."""

    def __init__(self, settings: RenderSettings, options: RenderOptions):
        super().__init__(options)
        self.setup = Setup(settings.to_dict(), options.device, options.threads_per_worker)
        remove_stale(SCRATCH_PREFIX)  # left by runs that were killed
        self.scratch = make_scratch(SCRATCH_PREFIX)
        self.slots: list[Worker] = []
        self._started = 0
        self._start_failures = 0

    @property
    def size(self) -> int:
        return self.options.workers

    def start(self) -> Worker:
        self._started += 1
        worker = Worker(f"worker-{self._started}", self.setup, self.scratch)
        self.slots.append(worker)
        return worker

    def replace(self, worker: Worker) -> None:
        self.slots.remove(worker)
        worker.kill()
        self.start()

    def retire(self, worker: Worker) -> None:
        self.slots.remove(worker)
        worker.stop()
        self.start()

    def await_ready(self, workers: list[Worker]) -> None:
        for worker in workers:
            self._await_ready(worker)

    def _await_ready(self, worker: Worker) -> None:
        if not worker.rx.poll(STARTUP_TIMEOUT):
            worker.kill()
            raise CmaError(f"Blender worker did not start within {STARTUP_TIMEOUT:.0f} s: {worker.log_tail()}")
        try:
            ready: Ready = worker.rx.recv()
        except (EOFError, OSError):
            reason = f"{worker.death()}: {worker.log_tail()}"
            self._start_failures += 1
            self.slots.remove(worker)
            worker.kill()
            if self._start_failures >= MAX_START_FAILURES or not self.device:
                raise CmaError(f"Blender worker failed to start ({reason})") from None
            self.start()
            return
        worker.ready = True
        self.device = ready.device

    def send(self, worker: Worker, request: RenderRequest) -> None:
        worker.send(request)

    def wait(self, busy: list[Worker], timeout: float) -> list[Worker]:
        ready = wait([w.rx for w in busy], timeout=timeout)
        return [w for w in busy if w.rx in ready]

    def receive(self, worker: Worker) -> Result | Lost | None:
        try:
            message: Started | Result = worker.rx.recv()
        except (EOFError, OSError):
            reason = worker.death()
            tail = crash_detail(worker.log_text())
            self.replace(worker)
            if not worker.started:  # it died before reading this task: not the task's fault
                return Lost(retry=worker.task)
            return Lost(f"{reason} while rendering" + (f" ({tail})" if tail else ""))
        if isinstance(message, Started):
            worker.started = True
            return None
        return message

    def close(self, kill: bool = False) -> None:
        for w in self.slots:
            w.kill() if kill else w.stop()
        self.slots = []
        shutil.rmtree(self.scratch, ignore_errors=True)
