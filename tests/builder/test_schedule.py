"""The scheduling loop that the local pool and the Ray actors share, on an in-process transport
(no Blender): every task gets exactly one outcome, whatever happens to the workers."""

import numpy as np

from cma_builder.render.messages import Failed, Rendered, RenderRequest
from cma_builder.render.schedule import Lost, Outcome, Slot, Task, Transport
from cma_builder.render.settings import RenderOptions


class ScriptedTransport(Transport):
    """Workers that answer at once, as ``script[model id]`` says: "ok", "raise", "hang",
    "die-idle" (the send fails: the worker was already dead) or "die" (dies while rendering)."""

    kill_note = "test worker killed"

    def __init__(self, options: RenderOptions, script: dict[str, str]):
        super().__init__(options)
        self.script = script
        self.started = 0
        self.events: list[str] = []

    @property
    def size(self) -> int:
        return self.options.workers

    def start(self) -> Slot:
        self.started += 1
        slot = Slot(f"w{self.started}")
        slot.where = "here"
        self.slots.append(slot)
        return slot

    def await_ready(self, slots: list[Slot]) -> None:
        for slot in slots:
            slot.ready = True

    def send(self, slot: Slot, request: RenderRequest) -> None:
        if self.script.get(request.model_id) == "die-idle":
            self.script[request.model_id] = "ok"  # the next worker renders it
            raise OSError("broken pipe")

    def wait(self, busy: list[Slot], timeout: float) -> list[Slot]:
        return [s for s in busy if self.script.get(s.task.request.model_id) != "hang"]

    def receive(self, slot: Slot) -> Rendered | Failed | Lost:
        action = self.script.get(slot.task.request.model_id, "ok")
        if action == "raise":
            return Failed("RuntimeError: boom", "Traceback (most recent call last): ...", {"setup": 0.5})
        if action == "die":
            self.replace(slot)
            return Lost("worker died with signal SIGKILL while rendering")
        return Rendered({"rgb": np.zeros(2)}, ["w"], {"render": 1.0}, rss_mb=10.0)

    def replace(self, slot: Slot) -> None:
        self.events.append(f"replace {slot.name}")
        self.slots.remove(slot)
        self.start()

    def retire(self, slot: Slot) -> None:
        self.events.append(f"retire {slot.name}")
        self.slots.remove(slot)
        self.start()

    def close(self, kill: bool = False) -> None:
        self.slots = []


def _run(script: dict[str, str], n: int, **options) -> tuple[dict[str, Outcome], ScriptedTransport]:
    transport = ScriptedTransport(RenderOptions(**{"workers": 2, "timeout": 0.05, **options}), script)
    tasks = [Task(RenderRequest(f"m{i}", f"/obj/m{i}.obj"), {"model_id": f"m{i}"}) for i in range(n)]
    outcomes: list[Outcome] = []
    transport.run(tasks, outcomes.append)
    by_model = {o.task.request.model_id: o for o in outcomes}
    assert len(outcomes) == n == len(by_model)  # exactly one outcome per task
    return by_model, transport


def test_each_worker_event_gives_its_task_one_outcome():
    script = {"m1": "raise", "m2": "hang", "m3": "die-idle", "m4": "die"}
    out, transport = _run(script, 6)
    assert out["m0"].status == "done" and out["m0"].worker == "w1 (here)" and out["m0"].rss_mb == 10.0
    assert out["m0"].warnings == ["w"] and out["m0"].arrays["rgb"].shape == (2,)
    assert (out["m1"].status, out["m1"].error, out["m1"].timings) == ("failed", "RuntimeError: boom", {"setup": 0.5})
    assert out["m1"].traceback.startswith("Traceback")
    assert out["m2"].status == "failed" and out["m2"].error == "timed out after 0.05 s (test worker killed)"
    assert out["m3"].status == "done"  # its first worker was dead already: another one rendered it
    assert out["m4"].status == "failed" and out["m4"].error.endswith("SIGKILL while rendering")
    assert len(transport.slots) == 2 and sum(e.startswith("replace") for e in transport.events) == 3


def test_workers_are_retired_after_their_share_or_above_the_memory_limit():
    _, transport = _run({}, 5, workers=1, recycle_after=2)
    assert transport.events == ["retire w1", "retire w2"]
    _, transport = _run({}, 3, workers=1, max_rss_mb=5)
    assert transport.events == ["retire w1", "retire w2", "retire w3"]


def test_a_worker_died_before_starting_its_task_hands_it_back():
    class Requeues(ScriptedTransport):
        def receive(self, slot):
            if slot.task.attempts == 1:
                self.replace(slot)
                return Lost(retry=slot.task.retried())
            return super().receive(slot)

    transport = Requeues(RenderOptions(workers=1), {})
    outcomes: list[Outcome] = []
    transport.run([Task(RenderRequest("m0", "/obj/m0.obj"), {})], outcomes.append)
    assert [(o.status, o.task.attempts) for o in outcomes] == [("done", 2)]
