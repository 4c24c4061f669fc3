"""``cma-build render --executor ray``: the same pipeline on a Ray cluster.

Each Ray actor is a persistent Blender worker (imports bpy once, renders many objects), placed
anywhere in the cluster; results come back to the driver, which writes shards and the index
exactly as in a local run. An actor that dies mid-object (segfault, SIGKILL, lost node) is
replaced and the object retried on another actor, up to ``RETRIES`` times; then it is recorded
as failed. Timeouts, recycling and memory limits work as in the local pool (pool.py); both
run the scheduling loop of schedule.py.

Every node needs the toolkit installed in the same environment (``pip install .[ray]``).
"""

from __future__ import annotations

import logging
import os
import shutil

from cma_builder.errors import CmaError
from cma_builder.render.messages import Ready, RenderRequest, Result, Setup
from cma_builder.render.pool import STARTUP_TIMEOUT
from cma_builder.render.schedule import Lost, Slot, Transport
from cma_builder.render.scratch import ACTOR_PREFIX, make_scratch, remove_stale
from cma_builder.render.settings import RenderOptions, RenderSettings

SCRATCH_PREFIX = ACTOR_PREFIX
RETRIES = 1  # extra attempts for an object whose actor died while rendering it
FORWARDED_ENV = ("CMA_FAULTS", "CMA_FAULTS_STATE")  # test hooks reach the actors on every node


class RenderActor:
    """Runs in a Ray worker process: one Blender scene, many objects."""

    def __init__(self, setup: Setup):
        from blender_scripts.scene import Scene  # imports bpy: once per actor

        settings = RenderSettings.from_dict(setup.settings)
        remove_stale(SCRATCH_PREFIX)  # of actors that died without cleaning up
        self.scratch = make_scratch(SCRATCH_PREFIX)
        self.settings = settings
        self.scene = Scene(settings, setup.device, setup.threads, self.scratch)

    def info(self) -> Ready:
        import socket

        from blender_scripts.worker import rss_mb

        return Ready(os.getpid(), self.scene.device, rss_mb(), host=socket.gethostname())

    def cleanup(self) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def render(self, request: RenderRequest) -> Result:
        from blender_scripts.worker import render_measured

        return render_measured(self.scene, self.settings, request)


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


class _ActorSlot(Slot):
    def __init__(self, name: str, actor):
        super().__init__(name)
        self.actor = actor
        self.ref = None  # of the actor's render call in flight


class RayPool(Transport):
    """Blender workers as Ray actors, anywhere in the cluster (the same loop as the local pool)."""

    kill_note = "Ray actor killed"

    def __init__(self, settings: RenderSettings, options: RenderOptions, address: str | None = None):
        try:
            import ray
        except ImportError:
            raise CmaError("--executor ray needs Ray: pip install 'cma-toolkit[ray]'") from None
        super().__init__(options)
        self.ray = ray
        self.setup = Setup(settings.to_dict(), options.device, options.threads_per_worker)
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
        self.slots: list[_ActorSlot] = []
        self._started = 0

    @property
    def size(self) -> int:
        return self.workers

    def start(self) -> _ActorSlot:
        self._started += 1
        slot = _ActorSlot(f"ray-{self._started}", self.actor_cls.remote(self.setup))
        self.slots.append(slot)
        return slot

    def await_ready(self, slots: list[_ActorSlot]) -> None:
        if not slots:
            return
        ray = self.ray
        refs = [s.actor.info.remote() for s in slots]
        try:
            infos: list[Ready] = ray.get(refs, timeout=STARTUP_TIMEOUT)
        except ray.exceptions.GetTimeoutError:
            raise CmaError(f"Ray actors did not start within {STARTUP_TIMEOUT:.0f} s (not enough free CPUs in "
                           "the cluster for --workers?)") from None
        except ray.exceptions.RayError as exc:
            raise CmaError(f"Blender worker failed to start on Ray: {str(exc).splitlines()[0]}") from None
        for s, info in zip(slots, infos):
            s.where = f"pid {info.pid} on {info.host}"
            s.ready = True
            self.device = self.device or info.device

    def replace(self, slot: _ActorSlot) -> None:
        self.slots.remove(slot)
        try:
            self.ray.kill(slot.actor, no_restart=True)
        except Exception:
            pass
        self.await_ready([self.start()])

    def send(self, slot: _ActorSlot, request: RenderRequest) -> None:
        slot.ref = slot.actor.render.remote(request)

    def wait(self, busy: list[_ActorSlot], timeout: float) -> list[_ActorSlot]:
        ready, _ = self.ray.wait([s.ref for s in busy], num_returns=1, timeout=timeout)
        return [s for s in busy if s.ref in ready]

    def receive(self, slot: _ActorSlot) -> Result | Lost:
        ray = self.ray
        ref, slot.ref = slot.ref, None
        try:
            return ray.get(ref)
        except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
            task = slot.task
            self.replace(slot)
            if task.attempts <= RETRIES:
                return Lost(retry=task.retried())
            cause = "actor died" if isinstance(exc, ray.exceptions.RayActorError) else "worker crashed"
            return Lost(f"worker died while rendering (Ray {cause}; tried {task.attempts} times)")
        except ray.exceptions.RayTaskError as exc:  # render_object returns failures; this is a bug
            return Lost(f"Ray task error: {str(exc).splitlines()[0]}")

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
