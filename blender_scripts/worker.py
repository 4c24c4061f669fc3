"""A persistent render worker: imports bpy once and renders objects sent by the driver.

Started by cma_builder.render.pool as ``python -m blender_scripts.worker --fd-in R --fd-out W``;
stdout/stderr (Blender's own chatter) go to a per-worker log file. Over the two pipes
(multiprocessing.connection framing) go the messages of cma_builder.render.messages: the
driver's ``Setup`` is answered with ``Ready``; each ``RenderRequest`` with ``Started`` and then
``Rendered`` or ``Failed``; ``Stop`` ends the worker.
"""

from __future__ import annotations

import argparse
import dataclasses
import faulthandler
import os
import time
import traceback
from multiprocessing.connection import Connection

import numpy as np

from cma_builder import faults
from cma_builder.geometry.cameras import blender_matrix_world, camera_rig
from cma_builder.geometry.visibility import bounding_sphere
from cma_builder.geometry.pointmaps import point_maps
from cma_builder.geometry.raycast import MeshRaycaster
from cma_builder.render.messages import Failed, Ready, Rendered, RenderRequest, Result, Setup, Started, Stop
from cma_builder.render.settings import RenderSettings


def rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def render_object(scene, settings: RenderSettings, request: RenderRequest) -> Result:
    """Render one object and build its arrays; failures are returned, not raised."""
    t0 = time.perf_counter()
    timings = {}
    try:
        warnings, source_to_world = scene.load_source(request)
        try:
            center, radius, diagonal = bounding_sphere(scene.vertices())
        except ValueError as exc:
            raise RuntimeError(str(exc)) from None
        if radius <= 0:
            raise RuntimeError("the mesh is a single point")
        K, w2c = camera_rig(settings.viewpoints, request.model_id, center, radius, settings.fov,
                            settings.resolution, settings.distance)
        t1 = time.perf_counter()
        timings["setup"] = t1 - t0
        images = scene.render_views(w2c, center, radius)
        t2 = time.perf_counter()
        timings["render"] = scene.render_seconds  # Blender's render calls (EXR writing included)
        timings["decode"] = t2 - t1 - scene.render_seconds  # reading the EXRs, compositing the RGB
        if not images["mask"].any():
            raise RuntimeError("the object covers no pixel in any view")
        t3 = time.perf_counter()
        raycaster = MeshRaycaster(*scene.triangles(), threads=scene.threads)
        t4 = time.perf_counter()
        maps = point_maps(images["depth"], images["mask"], K, w2c, settings.view_points, settings.fused_points,
                          raycaster.first_hit, settings.visibility_tolerance * diagonal, threads=scene.threads)
        timings["raycast"] = t4 - t3 + raycaster.seconds  # building the scene, casting the visibility rays
        timings["backproject"] = time.perf_counter() - t4 - raycaster.seconds
        arrays = {**images, **maps, "K": K, "world_to_cam": w2c,
                  "blender_matrix_world": np.stack([blender_matrix_world(m) for m in w2c]),
                  "source_to_world": source_to_world,
                  "bounding_sphere": np.array([*center, radius]), "diagonal": np.float64(diagonal)}
        return Rendered(arrays, warnings, timings)
    except Exception as exc:  # one object's failure must not end the worker
        detail = f"{exc.__class__.__name__}: {exc}".strip()
        return Failed(detail, traceback.format_exc(limit=4), timings)
    finally:
        try:
            scene.clear()
        except Exception:
            pass


def render_measured(scene, settings: RenderSettings, request: RenderRequest) -> Result:
    """``render_object`` with the test faults around it and the worker's memory after it."""
    faults.before_render(request.model_id)
    return dataclasses.replace(render_object(scene, settings, request), rss_mb=rss_mb())


def serve(conn_in: Connection, conn_out: Connection) -> None:
    setup: Setup = conn_in.recv()
    settings = RenderSettings.from_dict(setup.settings)
    from blender_scripts.scene import Scene  # imports bpy: once per process

    scene = Scene(settings, setup.device, setup.threads, setup.scratch)
    conn_out.send(Ready(os.getpid(), scene.device, rss_mb()))
    while True:
        request: RenderRequest | Stop = conn_in.recv()
        if isinstance(request, Stop):
            return
        conn_out.send(Started())  # from here on a crash is this request's failure
        conn_out.send(render_measured(scene, settings, request))
        faults.after_result(request.model_id)


def main() -> None:
    ap = argparse.ArgumentParser(description="cma-build render worker (started by the driver)")
    ap.add_argument("--fd-in", type=int, required=True)
    ap.add_argument("--fd-out", type=int, required=True)
    args = ap.parse_args()
    faulthandler.enable()  # a crash leaves "Fatal Python error: ..." and the Python stack in the worker log
    conn_in, conn_out = Connection(args.fd_in, writable=False), Connection(args.fd_out, readable=False)
    try:
        serve(conn_in, conn_out)
    except EOFError:
        pass  # the driver went away


if __name__ == "__main__":
    main()
