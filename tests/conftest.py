"""Shared fixtures: a small synthesized mini-ShapeNet, a small real render of it, the real ShapeNet
sample, CLI runner."""

from __future__ import annotations

import csv
import functools
import inspect
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cma_builder.format import DatasetReader, ref
from cma_builder.source.synth import synthesize

REPO = Path(__file__).resolve().parents[1]
REAL_SHAPENET = Path(os.environ.get("CMA_REAL_SHAPENET", REPO.parent / "shared" / "data" / "shapenet-real"))
REAL_ASSETS = Path(os.environ.get("CMA_REAL_ASSETS", REPO.parent / "shared" / "data" / "assets-real"))
BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def synth_tree(tmp_path_factory) -> Path:
    """3 models per category, seed 0. Read-only: copy it (``tree_copy``) before breaking it."""
    root = tmp_path_factory.mktemp("synth") / "mini-shapenet"
    synthesize(root, per_category=3, seed=0, show_progress=False)
    return root


@pytest.fixture
def tree_copy(synth_tree, tmp_path) -> Path:
    dst = tmp_path / "tree"
    shutil.copytree(synth_tree, dst)
    return dst


@pytest.fixture
def golden_copy(tmp_path) -> Path:
    """A copy of tests/golden/dataset (a small real render: 4 objects, 2 shards) to damage."""
    from golden.make_golden import GOLDEN

    return shutil.copytree(GOLDEN, tmp_path / "ds")


@pytest.fixture(scope="session")
def real_shapenet() -> Path:
    if not (REAL_SHAPENET.is_dir() and any(REAL_SHAPENET.iterdir())):
        pytest.skip(f"genuine ShapeNet sample not present at {REAL_SHAPENET}")
    return REAL_SHAPENET


@pytest.fixture(scope="session")
def real_assets() -> Path:
    """../shared/data/assets-real: real GLB/glTF/OBJ/PLY/STL/OFF files and faulty ones (read in place)."""
    if not (REAL_ASSETS / "README.md").is_file():
        pytest.skip(f"real non-ShapeNet assets not present at {REAL_ASSETS}")
    return REAL_ASSETS


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """Run an installed console script (``cma-build`` or ``pcssl-train``) in a real process."""
    return subprocess.run([str(BIN / args[0]), *args[1:]], capture_output=True, text=True, cwd=cwd, timeout=600)


def obj_groups(path: Path) -> dict[str, list[int]]:
    """Group name -> 1-based vertex indices its faces use (a minimal, independent OBJ read)."""
    groups: dict[str, list[int]] = {}
    current = None
    for line in path.read_text().splitlines():
        if line.startswith("g "):
            current = line[2:].strip()
        elif line.startswith("f "):
            groups.setdefault(current, []).extend(int(c.split("/")[0]) for c in line.split()[1:])
    return groups


SMALL = ["--resolution", "64", "--views", "4", "--samples", "4", "--view-points", "256", "--fused-points", "1024",
         "--workers", "2"]


def render(tree, out, *extra, env=None):
    cmd = [str(Path(sys.executable).parent / "cma-build"), "render", "--shapenet", str(tree), "--out", str(out), *SMALL,
           *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=dict(os.environ, **(env or {})))


def index_rows(ds: Path) -> list[dict]:
    with open(ds / "index.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def load(ds: Path, row: dict) -> dict:
    """Every array of the object of index ``row``, through the toolkit's reader."""
    return DatasetReader.open(ds).load(ref(row))


@pytest.fixture(scope="session")
def rendered(synth_tree, tmp_path_factory):
    out = tmp_path_factory.mktemp("render") / "ds"
    proc = render(synth_tree, out, "--limit", "8", "--normals", "--shard-size", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "8 rendered, 0 failed" in proc.stdout
    return out


# --- test tiers ---------------------------------------------------------------------------------
# Every test that starts a process is marked, so `make test-fast` (-m "not process") is a quick loop:
#   process: starts any process (Blender render workers, a console script, torchrun, mp.spawn, a Ray cluster)
#   blender: starts Blender render workers (a subset of process)
#   ddp:     starts a multi-process torch.distributed run (a subset of process)
# The marks are found from the source of the test, of the fixtures it uses and of the helpers of
# its module they call (to any depth), so a new test is marked without anyone remembering to.
_SPAWNS = {
    "blender": re.compile(r"\brender\(|cma-build\b.*\brender\b|WorkerPool\("),
    "ddp": re.compile(r"torchrun|nproc|gloo"),
    "process": re.compile(r"\bsubprocess\.|\brun_cli\(|\brender\(|Popen\(|WorkerPool\(|ray\.init\(|torchrun|"
                          r"\bmp\.spawn\("),
}


@functools.lru_cache(maxsize=None)
def _source(fn) -> str:
    """The source of a function, read once per session (tokenizing sources is most of collection)."""
    try:
        return inspect.getsource(fn)
    except (OSError, TypeError):
        return ""


@functools.lru_cache(maxsize=None)
def _module_helpers(module_name: str) -> tuple[dict[str, str], re.Pattern | None]:
    """Source of each non-test function of a module (and of this conftest), and a pattern that finds
    calls of them (read once per module)."""
    helpers = {name: _source(obj) for mod in (__name__, module_name) for name, obj in vars(sys.modules[mod]).items()
               if inspect.isfunction(obj) and not name.startswith("test_")}
    names = "|".join(map(re.escape, sorted(helpers, key=len, reverse=True)))
    return helpers, re.compile(rf"\b({names})\(") if helpers else None


def _expanded_source(sources: list[str], module_name: str) -> str:
    """The given sources plus every module helper they call, transitively."""
    helpers, calls = _module_helpers(module_name)
    seen, todo, out = set(), list(sources), []
    while todo:
        src = todo.pop()
        out.append(src)
        for name in set(calls.findall(src)) if calls else ():
            if name not in seen:
                seen.add(name)
                todo.append(helpers[name])
    return "\n".join(out)


def pytest_collection_modifyitems(config, items):
    for item in items:
        fn = getattr(item, "function", None)
        if fn is None:
            continue
        sources = [_source(fn)]
        for defs in item._fixtureinfo.name2fixturedefs.values():
            for fixture in defs:
                if not getattr(fixture.func, "__module__", "").startswith(("_pytest", "pytest")):
                    sources.append(_source(fixture.func))
        text = _expanded_source(sources, inspect.getmodule(fn).__name__)
        for mark, pattern in _SPAWNS.items():
            if pattern.search(text):
                item.add_marker(mark)
