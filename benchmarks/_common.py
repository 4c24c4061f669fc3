"""Shared by the benchmarks: the models to run on, and framing one loaded model."""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from cma_builder.geometry.cameras import camera_rig
from cma_builder.geometry.visibility import bounding_sphere
from cma_builder.render.settings import RenderSettings, default_workers
from cma_builder.source.synth import synthesize


def work_dir(prefix: str) -> Path:
    return Path(tempfile.mkdtemp(prefix=prefix))


def render_parser(doc: str, objects: int, resolution: int, views: int, samples: int,
                  workers: bool = True) -> argparse.ArgumentParser:
    """The options every rendering benchmark has, with that benchmark's defaults."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shapenet", type=Path, help="ShapeNetCore.v2 root (default: a synthesized mini-ShapeNet)")
    ap.add_argument("--objects", type=int, default=objects)
    if workers:
        ap.add_argument("--workers", type=int, default=default_workers(os.cpu_count() or 1))
    ap.add_argument("--resolution", type=int, default=resolution)
    ap.add_argument("--views", type=int, default=views)
    ap.add_argument("--samples", type=int, default=samples)
    return ap


def source_tree(shapenet: Path | None, work: Path, per_category: int, seed: int = 0) -> Path:
    """``shapenet`` when given, else a mini-ShapeNet synthesized under ``work``."""
    if shapenet is not None:
        return shapenet
    root = work / "mini-shapenet"
    synthesize(root, per_category=max(1, per_category), seed=seed, show_progress=False)
    return root


def frame(scene, settings: RenderSettings, model_id: str):
    """(world_to_cam (V, 4, 4), center, radius) of the views of the model loaded in ``scene``."""
    center, radius, _ = bounding_sphere(scene.vertices())
    _, w2c = camera_rig(settings.viewpoints, model_id, center, radius, settings.fov, settings.resolution)
    return w2c, center, radius
