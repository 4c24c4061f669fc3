"""Reading ModelNet as the Point-BERT family distributes it: our readers against the official way, in
one run.

Writes a ``modelnet40_normal_resampled``-style folder of ``--files`` clouds of 10000 rows
(``x,y,z,nx,ny,nz``) and a ``.dat`` cache of them (8192 points each), then times:

* text files: ``modelnet_files.read_raw`` against the official loader's per-file
  ``np.loadtxt(fn, delimiter=',')``;
* sampling to 1024 points by FPS: ours (batched numpy, float64) against the official
  ``farthest_point_sample`` of Point-BERT's ``datasets/ModelNetDataset.py`` (the textbook loop:
  per step the squared distance to the newest centroid, running minimum, argmax), re-typed here;
* the ``.dat`` cache: the restricted unpickler against plain ``pickle.load``.

    python benchmarks/modelnet_files.py --files 64
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pcssl_train.eval.modelnet_files import read_raw, sample_clouds  # noqa: E402
from pcssl_train.eval.safe_pickle import load_data_pickle  # noqa: E402


def official_style_fps(points: np.ndarray, npoint: int) -> np.ndarray:
    """The textbook FPS loop the official numpy loaders use (start fixed at 0 here for comparability)."""
    xyz = points[:, :3]
    n = len(xyz)
    centroids = np.zeros(npoint, dtype=np.int64)
    distance = np.full(n, 1e10)
    farthest = 0
    for i in range(npoint):
        centroids[i] = farthest
        d = np.sum((xyz - xyz[farthest]) ** 2, -1)
        distance = np.minimum(distance, d)
        farthest = int(np.argmax(distance))
    return points[centroids]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=64)
    ap.add_argument("--rows", type=int, default=10000)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "modelnet40_normal_resampled"
        names = [f"c{i:02d}" for i in range(40)]
        ids = []
        for k in range(args.files):
            name = names[k % 40]
            (root / name).mkdir(parents=True, exist_ok=True)
            sid = f"{name}_{k + 1:04d}"
            rows = rng.standard_normal((args.rows, 6)).astype(np.float32)
            np.savetxt(root / name / f"{sid}.txt", rows, fmt="%.6f", delimiter=",")
            ids.append(sid)
        (root / "modelnet40_shape_names.txt").write_text("\n".join(names) + "\n")
        (root / "modelnet40_train.txt").write_text("\n".join(ids) + "\n")

        t = time.perf_counter()
        raw = read_raw(root, 40, "train")
        ours_read = time.perf_counter() - t
        t = time.perf_counter()
        for sid in ids:
            np.loadtxt(root / sid.rsplit("_", 1)[0] / f"{sid}.txt", delimiter=",").astype(np.float32)
        base_read = time.perf_counter() - t
        print(f"text files ({args.files} x {args.rows} rows): ours {ours_read / args.files * 1e3:.1f} ms/file, "
              f"np.loadtxt {base_read / args.files * 1e3:.1f} ms/file, ratio {base_read / ours_read:.2f}x")

        n = min(16, args.files)
        t = time.perf_counter()
        ours = sample_clouds(raw["clouds"][:n], 1024, "fps", root)
        ours_fps = time.perf_counter() - t
        t = time.perf_counter()
        base = [official_style_fps(c, 1024) for c in raw["clouds"][:n]]
        base_fps = time.perf_counter() - t
        same = sum(np.array_equal(a, b) for a, b in zip(ours, base))
        print(f"FPS {args.rows} -> 1024 ({n} clouds): ours {ours_fps / n * 1e3:.1f} ms/cloud, official loop "
              f"{base_fps / n * 1e3:.1f} ms/cloud, ratio {base_fps / ours_fps:.2f}x; identical samples {same}/{n}")

        dat = root / "modelnet40_train_8192pts_fps.dat"
        with open(dat, "wb") as fh:
            pickle.dump([[c[:8192] for c in raw["clouds"]], [np.array([i % 40]).astype(np.int32)
                                                              for i in range(args.files)]], fh)
        t = time.perf_counter()
        load_data_pickle(dat)
        ours_dat = time.perf_counter() - t
        t = time.perf_counter()
        with open(dat, "rb") as fh:
            pickle.load(fh)          # our own file, written just above
        base_dat = time.perf_counter() - t
        print(f".dat cache ({dat.stat().st_size / 1e6:.0f} MB): restricted unpickler {ours_dat * 1e3:.0f} ms, "
              f"pickle.load {base_dat * 1e3:.0f} ms, ratio {base_dat / ours_dat:.2f}x")


if __name__ == "__main__":
    main()
