"""``cma-build render --executor ray``: the same pipeline on a Ray cluster.

Each Ray actor is a persistent Blender worker (imports bpy once, renders many objects), placed
anywhere in the cluster; results come back to the driver, which writes shards and the index
exactly as in a local run. An actor that dies mid-object (segfault, SIGKILL, lost node) is
replaced and the object retried on another actor, up to ``RETRIES`` times; then it is recorded
as failed. Timeouts, recycling and memory limits work as in the local pool (workers.py).

Every node needs the toolkit installed in the same environment (``pip install .[ray]``).
"""

from __future__ import annotations

import logging
import os
import shutil
import time
from typing import Callable, Iterator

from cma_builder.errors import CmaError
from cma_builder.render.scratch import make_scratch, remove_stale
from cma_builder.render.settings import RenderOptions, RenderSettings
from cma_builder.render.pool import STARTUP_TIMEOUT, Outcome

SCRATCH_PREFIX = "cma-ray-"
RETRIES = 1  # extra attempts for an object whose actor died while rendering it
FORWARDED_ENV = ("CMA_FAULTS", "CMA_FAULTS_STATE")  # test hooks reach the actors on every node


class RenderActor:
    """Runs in a Ray worker process: one Blender scene, many objects."""

    def __init__(self, setup: dict):
        from blender_scripts.scene import Scene  # imports bpy: once per actor

        settings = RenderSettings.from_dict(setup["settings"])
        remove_stale(SCRATCH_PREFIX)  # of actors that died without cleaning up
        self.scratch = make_scratch(SCRATCH_PREFIX)
        self.settings = settings
        self.scene = Scene(settings, setup["device"], setup["threads"], self.scratch)

    def info(self) -> dict:
        import socket

        from blender_scripts.worker import rss_mb

        return {"pid": os.getpid(), "host": socket.gethostname(), "device": self.scene.device, "rss_mb": rss_mb()}

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def render(self, task: dict) -> dict:
        from blender_scripts.worker import render_object, rss_mb
        from cma_builder import faults

        faults.before_render(task["model_id"])
        result = render_object(self.scene, self.settings, task)
        result["rss_mb"] = rss_mb()
        return result


def _check_reachable(address: str, timeout: float = 10.0) -> None:
    import socket

    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout):
            pass
    except ValueError:
        raise CmaError(f"--ray-address {address}: expected auto, HOST:PORT or ray://HOST:PORT") from None
    except OSError as exc:
        raise CmaError(f"cannot start or reach Ray (--ray-address {address}): {exc.strerror or exc}") from None


class _Slot:
    def __init__(self, name: str, actor):
        self.name = name
        self.actor = actor
        self.task: dict | None = None
        self.ref = None
        self.deadline = 0.0
        self.count = 0
        self.where = ""


class RayPool:
    """Same interface as workers.WorkerPool: ``run(tasks, on_outcome)``, ``close()``, ``device``."""

    def __init__(self, settings: RenderSettings, options: RenderOptions, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise CmaError("--executor ray needs Ray: pip install 'cma-toolkit[ray]'") from None
        self.ray = ray
        self.options = options
        self.setup = {"settings": settings.to_dict(), "device": options.device, "threads": options.threads_per_worker}
        self.device = ""
        self._owns = False
        if not ray.is_initialized():
            os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
            env = {k: os.environ[k] for k in FORWARDED_ENV if k in os.environ}
            kwargs = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                          runtime_env={"env_vars": env})
            if address and address != "auto" and not address.startswith("ray://"):
                _check_reachable(address)  # ray.init retries an unreachable address for many minutes
            try:
                if address:
                    ray.init(address=address, **kwargs)
                else:  # a private single-machine instance, sized for the workers
                    ray.init(num_cpus=options.workers * options.threads_per_worker, **kwargs)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise CmaError(f"cannot start or reach Ray (--ray-address {address or 'local'}): "
                               f"{str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__}") from None
            self._owns = True
        self.workers = options.workers or max(1, int(ray.cluster_resources().get("CPU", 1))
                                              // options.threads_per_worker)
        self.actor_cls = ray.remote(num_cpus=options.threads_per_worker, max_restarts=0)(RenderActor)
        self.slots: list[_Slot] = []
        self._started = 0

    def _start(self) -> _Slot:
        self._started += 1
        slot = _Slot(f"ray-{self._started}", self.actor_cls.remote(self.setup))
        self.slots.append(slot)
        return slot

    def _await_ready(self, slots: list[_Slot]) -> None:
        ray = self.ray
        refs = [s.actor.info.remote() for s in slots]
        try:
            infos = ray.get(refs, timeout=STARTUP_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise CmaError(f"Ray actors did not start within {STARTUP_TIMEOUT:.0f} s (not enough free CPUs in "
                           "the cluster for --workers?)") from None
        except ray.exceptions.RayError as exc:
            raise CmaError(f"Blender worker failed to start on Ray: {str(exc).splitlines()[0]}") from None
        for s, info in zip(slots, infos):
            s.where = f"pid {info['pid']} on {info['host']}"
            self.device = self.device or info["device"]

    def _replace(self, slot: _Slot) -> _Slot:
        self.slots.remove(slot)
        try:
            self.ray.kill(slot.actor, no_restart=True)
        except Exception:
            pass
        new = self._start()
        self._await_ready([new])
        return new

    def run(self, tasks: Iterator[dict], on_outcome: Callable[[Outcome], None]) -> None:
        ray = self.ray
        pending = iter(tasks)
        retry: list[dict] = []
        exhausted = False
        while len(self.slots) < self.workers:
            self._start()
        self._await_ready(self.slots)
        while True:
            for s in list(self.slots):
                if s.task is None and (retry or not exhausted):
                    task = retry.pop() if retry else next(pending, None)
                    if task is None:
                        exhausted = True
                        continue
                    s.task, s.ref = task, s.actor.render.remote({k: task[k] for k in ("model_id", "obj_path")})
                    s.deadline = time.monotonic() + self.options.timeout
            busy = [s for s in self.slots if s.task is not None]
            if not busy:
                if exhausted and not retry:
                    return
                continue
            timeout = max(0.0, min(s.deadline for s in busy) - time.monotonic())
            ready, _ = ray.wait([s.ref for s in busy], num_returns=1, timeout=timeout)
            now = time.monotonic()
            for s in busy:
                if s.ref in ready:
                    self._receive(s, on_outcome, retry)
                elif now >= s.deadline:
                    task, name = s.task, s.name
                    self._replace(s)
                    on_outcome(Outcome(task, "failed", error=f"timed out after {self.options.timeout:g} s "
                                       "(Ray actor killed)", worker=name))

    def _receive(self, s: _Slot, on_outcome: Callable[[Outcome], None], retry: list[dict]) -> None:
        ray = self.ray
        task = s.task
        try:
            msg = ray.get(s.ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            attempts = task.get("_attempts", 1)
            self._replace(s)
            if attempts <= RETRIES:
                retry.append(dict(task, _attempts=attempts + 1))
                return
            cause = "actor died" if isinstance(exc, ray.exceptions.RayActorError) else "worker crashed"
            on_outcome(Outcome(task, "failed", error=f"worker died while rendering (Ray {cause}; tried {attempts} "
                               "times)", worker=s.name))
            return
        except ray.exceptions.RayTaskError as exc:  # render_object returns failures; this is a bug
            s.task = s.ref = None
            on_outcome(Outcome(task, "failed", error=f"Ray task error: {str(exc).splitlines()[0]}", worker=s.name))
            return
        s.task = s.ref = None
        s.count += 1
        on_outcome(Outcome(task, msg["status"], arrays=msg.get("arrays"), error=msg.get("error", ""),
                           traceback=msg.get("traceback", ""),
                           warnings=msg.get("warnings", []), timings=msg.get("timings", {}),
                           worker=f"{s.name} ({s.where})", rss_mb=msg.get("rss_mb", 0.0)))
        if s.count >= self.options.recycle_after or msg.get("rss_mb", 0.0) > self.options.max_rss_mb:
            self._replace(s)

    def close(self, kill: bool = False) -> None:
        if not kill and self.slots:
            try:
                self.ray.get([s.actor.cleanup.remote() for s in self.slots], timeout=30)
            except Exception:
                pass
        for s in self.slots:
            try:
                self.ray.kill(s.actor, no_restart=True)
            except Exception:
                pass
        self.slots = []
        if self._owns and self.ray.is_initialized():
            self.ray.shutdown()
