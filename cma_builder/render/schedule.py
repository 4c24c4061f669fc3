"""The scheduling loop shared by the local worker pool and the Ray actors.

A ``Transport`` owns a list of ``Slot`` (one worker each, holding at most one task) and knows how
to start, feed, wait on, read and replace its workers; ``Transport.run`` hands the tasks out,
enforces the per-object timeout, recycles workers and reports one ``Outcome`` per task.
"""

from __future__ import annotations

import dataclasses
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Callable, Iterable, Iterator

from cma_builder.render.messages import Rendered, RenderRequest, Result
from cma_builder.render.settings import RenderOptions


@dataclass(frozen=True)
class Task:
    request: RenderRequest
    record: dict  # the driver's index record of this object, completed from the outcome
    attempts: int = 1  # Ray retries an object whose actor died while rendering it

    def retried(self) -> "Task":
        return dataclasses.replace(self, attempts=self.attempts + 1)


@dataclass
class Outcome:
    task: Task
    status: str  # done | failed
    arrays: dict | None = None
    error: str = ""
    traceback: str = ""  # the worker's Python traceback when the object raised (kept in the run log)
    warnings: list[str] = field(default_factory=list)
    timings: dict = field(default_factory=dict)
    worker: str = ""
    rss_mb: float = 0.0  # the worker's resident memory after this object

    @classmethod
    def of(cls, task: Task, result: Result, worker: str) -> "Outcome":
        if isinstance(result, Rendered):
            return cls(task, "done", arrays=result.arrays, warnings=result.warnings, timings=result.timings,
                       worker=worker, rss_mb=result.rss_mb)
        return cls(task, "failed", error=result.error, traceback=result.traceback, timings=result.timings,
                   worker=worker, rss_mb=result.rss_mb)


@dataclass(frozen=True)
class Lost:
    """A slot's task ended without a result (its worker died, or the call failed); the transport
    has already replaced the worker where needed."""

    error: str = ""  # recorded as the task's failure...
    retry: Task | None = None  # ...unless this task is to be run again on another worker


OutcomeHandler = Callable[[Outcome], None]


class Slot:
    """One worker and the task it holds (compared by identity)."""

    def __init__(self, name: str):
        self.name = name
        self.where = ""  # "pid N" / "pid N on HOST", for the record's worker column
        self.ready = False
        self.task: Task | None = None
        self.deadline = 0.0
        self.count = 0  # objects finished

    @property
    def label(self) -> str:
        return f"{self.name} ({self.where})"


class _Queue:
    """The tasks still to hand out: those to run again first, then the pending ones."""

    def __init__(self, tasks: Iterable[Task]):
        self._pending: Iterator[Task] = iter(tasks)
        self._again: list[Task] = []
        self._exhausted = False

    def put_back(self, task: Task) -> None:
        self._again.append(task)

    def next(self) -> Task | None:
        if self._again:
            return self._again.pop()
        if not self._exhausted:
            task = next(self._pending, None)
            if task is not None:
                return task
            self._exhausted = True
        return None

    @property
    def empty(self) -> bool:
        return self._exhausted and not self._again


class Transport(ABC):
    """Where workers run. ``run`` is the scheduling loop; the rest is per transport."""

    kill_note = "worker killed"  # how a timed-out worker was ended, in the failure's reason

    def __init__(self, options: RenderOptions):
        self.options = options
        self.slots: list[Slot] = []
        self.device = ""

    @property
    @abstractmethod
    def size(self) -> int:
        """How many workers to keep."""

    @abstractmethod
    def start(self) -> Slot:
        """Start one more worker (appended to ``slots``, not yet ready)."""

    @abstractmethod
    def await_ready(self, slots: list[Slot]) -> None:
        """Wait until these slots' workers are ready (a worker that fails to start may be replaced)."""

    @abstractmethod
    def send(self, slot: Slot, request: RenderRequest) -> None:
        """Send ``request`` to the slot's worker; OSError: the worker died while idle."""

    @abstractmethod
    def wait(self, busy: list[Slot], timeout: float) -> list[Slot]:
        """The busy slots with something to receive, after at most ``timeout`` seconds."""

    @abstractmethod
    def receive(self, slot: Slot) -> Result | Lost | None:
        """What the slot's worker says about its task (None: nothing yet, e.g. ``Started``)."""

    @abstractmethod
    def replace(self, slot: Slot) -> None:
        """End the slot's worker now and start another in its place."""

    @abstractmethod
    def close(self, kill: bool = False) -> None:
        """Stop every worker (``kill``: at once, without letting them clean up)."""

    def retire(self, slot: Slot) -> None:
        """Replace a worker that did its share (``recycle_after``, ``max_rss_mb``)."""
        self.replace(slot)

    def run(self, tasks: Iterable[Task], on_outcome: OutcomeHandler) -> None:
        """Render every task; ``on_outcome`` is called once per task, in completion order."""
        queue = _Queue(tasks)
        while len(self.slots) < self.size:
            self.start()
        while True:
            self.await_ready([s for s in self.slots if not s.ready])
            self._hand_out(queue)
            busy = [s for s in self.slots if s.task is not None]
            if not busy:
                if queue.empty:
                    return
                continue
            timeout = max(0.0, min(s.deadline for s in busy) - time.monotonic())
            replied = self.wait(busy, timeout)
            now = time.monotonic()
            for slot in busy:
                if slot in replied:
                    self._take_reply(slot, queue, on_outcome)
                elif now >= slot.deadline:
                    self._time_out(slot, on_outcome)

    def _hand_out(self, queue: _Queue) -> None:
        for slot in list(self.slots):
            if not slot.ready or slot.task is not None:
                continue
            task = queue.next()
            if task is None:
                return
            slot.task, slot.deadline = task, time.monotonic() + self.options.timeout
            try:
                self.send(slot, task.request)
            except OSError:  # it died while idle (e.g. killed for memory): another worker takes the task
                queue.put_back(task)
                self.replace(slot)

    def _take_reply(self, slot: Slot, queue: _Queue, on_outcome: OutcomeHandler) -> None:
        task = slot.task
        reply = self.receive(slot)
        if reply is None:
            return
        slot.task = None
        if isinstance(reply, Lost):
            if reply.retry is not None:
                queue.put_back(reply.retry)
            else:
                on_outcome(Outcome(task, "failed", error=reply.error, worker=slot.name))
            return
        slot.count += 1
        on_outcome(Outcome.of(task, reply, slot.label))
        if slot.count >= self.options.recycle_after or reply.rss_mb > self.options.max_rss_mb:
            self.retire(slot)

    def _time_out(self, slot: Slot, on_outcome: OutcomeHandler) -> None:
        task = slot.task
        self.replace(slot)
        on_outcome(Outcome(task, "failed", error=f"timed out after {self.options.timeout:g} s ({self.kill_note})",
                           worker=slot.name))

