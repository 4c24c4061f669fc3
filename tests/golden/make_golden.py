"""Record (or check) the golden outputs: every array of a small real render, and each method's
training losses for a fixed seed. ``tests/test_golden.py`` compares a fresh run with these.

    python tests/golden/make_golden.py            # rewrite render.json + losses.json here
    python tests/golden/make_golden.py --check    # print differences only
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr

HERE = Path(__file__).resolve().parent
RENDER_ARGS = ["--resolution", "32", "--views", "4", "--samples", "4", "--view-points", "128",
               "--fused-points", "256", "--normals", "--limit", "4", "--workers", "1", "--shard-size", "3"]
TRAIN_SET = ("optim.epochs=2", "train.tensorboard=false")


def render(tree: Path, out: Path) -> None:
    cmd = [str(Path(sys.executable).parent / "cma-build"), "render", "--shapenet", str(tree), "--out", str(out),
           *RENDER_ARGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def plain(a: np.ndarray) -> np.ndarray:
    """Object (string) arrays as fixed-width unicode, so bytes and .npz need no pickle."""
    return np.asarray(a.tolist(), dtype=str) if a.dtype == object else np.asarray(a)


def digest(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(plain(a)).tobytes()).hexdigest()[:16]


def dataset_arrays(ds: Path) -> dict[str, dict[str, np.ndarray]]:
    """{synset/model: {array: value}} read with plain zarr (independent of the toolkit's reader)."""
    with open(ds / "index.csv", newline="") as fh:
        rows = [r for r in csv.DictReader(fh) if r["status"] == "done"]
    out = {}
    for r in sorted(rows, key=lambda r: (r["synset_id"], r["model_id"])):
        group = zarr.open_group(ds / "shards" / r["shard"], mode="r", use_consolidated=False)
        out[f"{r['synset_id']}/{r['model_id']}"] = {k: group[k][int(r["row"])] for k in sorted(group.array_keys())}
    return out


def summarize(arrays: dict[str, dict[str, np.ndarray]]) -> dict:
    return {key: {name: {"dtype": str(a.dtype), "shape": list(a.shape), "sha256": digest(a)}
                  for name, a in obj.items()} for key, obj in arrays.items()}


def train_losses(ds: Path, work: Path) -> dict[str, list[float]]:
    from pcssl_train.engine.config import load_config
    from pcssl_train.engine.trainer import pretrain
    from pcssl_train.methods import METHODS

    out = {}
    for name in sorted(METHODS):
        run = work / f"run-{name}"
        pretrain(load_config(name, f"{name}-tiny", TRAIN_SET), ds, run, progress=False)
        with open(run / "metrics.csv", newline="") as fh:
            out[name] = [float(r["loss"]) for r in csv.DictReader(fh)]
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    from cma_builder.source.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "tree", per_category=3, seed=0, show_progress=False)
        render(tmp / "tree", tmp / "ds")
        arrays = dataset_arrays(tmp / "ds")
        summary, losses = summarize(arrays), train_losses(tmp / "ds", tmp)
    if args.check:
        old = json.loads((HERE / "render.json").read_text())
        print("render equal" if old == summary else f"render DIFFERS")
        print("losses", json.loads((HERE / "losses.json").read_text()) == losses)
        return
    (HERE / "render.json").write_text(json.dumps(summary, indent=1, sort_keys=True) + "\n")
    (HERE / "losses.json").write_text(json.dumps(losses, indent=1, sort_keys=True) + "\n")
    np.savez_compressed(HERE / "render.npz", **{f"{k}|{n}": plain(a) for k, obj in arrays.items() for n, a in obj.items()})


if __name__ == "__main__":
    main()
