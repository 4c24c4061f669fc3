"""Procedural mini-ShapeNet: real ShapeNetCore.v2 layout, synset ids and normalization.

``synthesize(out, per_category, seed)`` writes::

    out/taxonomy.json
    out/README.txt
    out/<synset>/<model id>/models/model_normalized.{obj,mtl,json}
    out/<synset>/<model id>/images/texture<k>.jpg      (textured models only)

Each model depends only on (seed, synset, index), so the same seed gives byte-identical
files and a larger ``per_category`` keeps the smaller set's models. The output folder is
replaced atomically; a folder that is not an earlier synth output is never overwritten.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cma_builder.errors import CmaError
from cma_builder.progress import progress
from cma_builder.source.taxonomy import Taxonomy
from cma_builder.source.synth.mesh import write_obj
from cma_builder.source.synth.shapes import GENERATORS, Assembly
from cma_builder.source.synth.textures import save_jpeg

README_MARKER = "Procedural mini-ShapeNet written by cma-build synth"
CATEGORY_IDS = tuple(sorted(GENERATORS))


@dataclass
class SynthResult:
    root: Path
    counts: dict[str, int]  # synset id -> models written


def model_id(seed: int, synset_id: str, index: int) -> str:
    """32 hex characters, like ShapeNet model ids."""
    return hashlib.sha256(f"cma-synth:{seed}:{synset_id}:{index}".encode()).hexdigest()[:32]


def is_synth_output(path: Path) -> bool:
    readme = path / "README.txt"
    return readme.is_file() and readme.read_text("utf-8", errors="replace").startswith(README_MARKER)


def write_model(folder: Path, seed: int, synset_id: str, index: int) -> str:
    """Generate and write one model into ``folder/<model id>/``; returns the model id."""
    mid = model_id(seed, synset_id, index)
    rng = np.random.default_rng([seed, int(synset_id), index])
    assembly = Assembly(rng)
    GENERATORS[synset_id](assembly)
    text = write_obj(assembly.model, mid)
    models = folder / mid / "models"
    models.mkdir(parents=True)
    (models / "model_normalized.obj").write_text(text.obj, "utf-8")
    (models / "model_normalized.mtl").write_text(text.mtl, "utf-8")
    (models / "model_normalized.json").write_text(json.dumps(text.stats) + "\n", "utf-8")
    if assembly.textures:
        images = folder / mid / "images"
        images.mkdir()
        for name, image in assembly.textures:
            save_jpeg(image, images / name)
    return mid


def synthesize(out: str | os.PathLike, per_category: int = 8, seed: int = 0,
               categories: list[str] | None = None, show_progress: bool = True) -> SynthResult:
    out = Path(out).expanduser()
    if per_category < 1:
        raise CmaError(f"--per-category must be at least 1, got {per_category}")
    if seed < 0:
        raise CmaError(f"--seed must be >= 0, got {seed}")
    synsets = list(CATEGORY_IDS if categories is None else categories)
    unknown = [s for s in synsets if s not in GENERATORS]
    if unknown:
        names = ", ".join(f"{s} ({Taxonomy.bundled().category_name(s)})" for s in CATEGORY_IDS)
        raise CmaError(f"synth has no generator for {', '.join(unknown)}; available: {names}")
    if out.exists() and not out.is_dir():
        raise CmaError(f"{out}: is a file; expected a folder for the mini-ShapeNet")
    if out.is_dir() and any(out.iterdir()) and not is_synth_output(out):
        raise CmaError(f"{out}: folder is not empty and is not a cma-build synth output; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)

    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        jobs = [(sid, i) for sid in synsets for i in range(per_category)]
        for sid, i in progress(jobs, desc="synth", unit="model", enabled=show_progress):
            write_model(tmp / sid, seed, sid, i)
        bundled = Taxonomy.bundled()
        taxonomy = [{"synsetId": s, "name": bundled.synsets[s].name, "children": [], "numInstances": per_category}
                    for s in synsets]
        (tmp / "taxonomy.json").write_text(json.dumps(taxonomy, indent=1) + "\n", "utf-8")
        (tmp / "README.txt").write_text(
            f"{README_MARKER} (seed {seed}, {per_category} models per category).\n"
            "Layout, synset ids and normalization follow ShapeNetCore.v2: Y up, -Z front, vertex\n"
            "centroid at the origin, unit bounding-box diagonal. Regenerate with:\n"
            f"  cma-build synth --out <DIR> --per-category {per_category} --seed {seed}\n", "utf-8")
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return SynthResult(out.resolve(), {s: per_category for s in synsets})


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Replace ``out`` with ``tmp`` so readers see the old tree or the new one, never a mix."""
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
        os.replace(out, old / "tree")
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)
