"""Record (or check) the golden outputs that ``tests/test_golden.py`` compares with:

- ``dataset/``: a small real render (the synthetic tree of ``tests/conftest.py``: 3 models per
  category, seed 0; ``RENDER_ARGS``), stored as the toolkit writes it (index.csv, zarr.json, shards);
- ``losses.json``: each method's per-epoch losses, 2 epochs of its tiny config, trained on that dataset.

    python tests/golden/make_golden.py            # re-record both (say why in the commit)
    python tests/golden/make_golden.py --check    # print what differs, record nothing

Re-record only for a deliberate change of output: a refactor must leave both as they are.
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import zarr

HERE = Path(__file__).resolve().parent
GOLDEN = HERE / "dataset"
RENDER_ARGS = ["--resolution", "32", "--views", "4", "--samples", "4", "--view-points", "128",
               "--fused-points", "256", "--normals", "--limit", "4", "--workers", "1", "--shard-size", "3"]
TRAIN_SET = ("optim.epochs=2", "train.tensorboard=false")
KEEP = ("index.csv", "zarr.json", "shards")  # what a dataset is; locks, staging and run logs are not


def render(tree: Path, out: Path) -> None:
    cmd = [str(Path(sys.executable).parent / "cma-build"), "render", "--shapenet", str(tree), "--out", str(out),
           *RENDER_ARGS]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def index_rows(ds: Path) -> list[dict]:
    with open(ds / "index.csv", newline="") as fh:
        return sorted((r for r in csv.DictReader(fh) if r["status"] == "done"),
                      key=lambda r: (r["synset_id"], r["model_id"]))


def dataset_arrays(ds: Path) -> dict[str, dict[str, np.ndarray]]:
    """{synset/model: {array: value}} read with plain zarr (independent of the toolkit's reader)."""
    out = {}
    for r in index_rows(ds):
        group = zarr.open_group(ds / "shards" / r["shard"], mode="r", use_consolidated=False)
        out[f"{r['synset_id']}/{r['model_id']}"] = {k: group[k][int(r["row"])] for k in sorted(group.array_keys())}
    return out


def dataset_attrs(ds: Path) -> dict:
    return json.loads((ds / "zarr.json").read_text())["attributes"]["cma-dataset"]


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


def kernel_family() -> dict:
    """What decides how CPU kernels round: torch's version and the instruction set it dispatches to."""
    import torch

    return {"torch": torch.__version__, "cpu_capability": torch.backends.cpu.get_cpu_capability()}


def copy_dataset(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in KEEP:
        (shutil.copytree if (src / name).is_dir() else shutil.copy2)(src / name, dst / name)
    return dst


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    from cma_builder.source.synth import synthesize

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthesize(tmp / "tree", per_category=3, seed=0, show_progress=False)
        render(tmp / "tree", tmp / "ds")
        if args.check:
            new, old = dataset_arrays(tmp / "ds"), dataset_arrays(GOLDEN)
            same = new.keys() == old.keys() and all(
                n.keys() == old[k].keys() and all(np.array_equal(a, old[k][x]) for x, a in n.items())
                for k, n in new.items())
            print("render equal" if same else "render DIFFERS (bit for bit; tests/test_golden.py says how far)")
            losses = train_losses(copy_dataset(GOLDEN, tmp / "golden"), tmp)
            print("losses", json.loads((HERE / "losses.json").read_text())["losses"] == losses)
            return
        shutil.rmtree(GOLDEN, ignore_errors=True)
        copy_dataset(tmp / "ds", GOLDEN)
        losses = train_losses(copy_dataset(GOLDEN, tmp / "golden"), tmp)
    record = {"recorded_with": kernel_family(), "losses": losses}
    (HERE / "losses.json").write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
