"""Linear-SVM protocols of the papers (``--svm-protocol``), each as its official code does it.

Every preset fixes what the official script fixes: which SVM and C, how many points and how they
are sampled, how the feature is built from the encoder's output tokens, whether clouds are
normalized and features standardized. Sources (file, line, commit) are in :data:`PRESETS` and in
docs/EVALUATION.md. ``cv`` is this toolkit's own protocol (C chosen on validation data or by
cross-validation on train, standardized features; see ``svm.py``).

Features from tokens (``forward_tokens``: global tokens, e.g. a cls token, and local tokens: patch
tokens of a point transformer, per-point features of PointNet / DGCNN), after the final norm:

* ``max|mean``  - [max over local ; mean over local] (CrossPoint's DGCNN ``feat``, and ``cv``);
* ``max+mean``  - max over local + mean over local, summed (Point-M2AE ``x_vis.mean(1) + x_vis.max(1)[0]``);
* ``recon``     - [max over the global tokens ; max + mean over local] (ReCon ``PointTransformerSVM``;
  its global tokens are cls, img and text). An encoder without global tokens (Point-MAE's, every
  encoder pretrained here) has nothing for the first half: the feature is then ``max+mean`` alone.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from cma_builder.geometry.normalize import normalize_clouds

from ..errors import TrainError
from .svm import accuracy, standardize

POOLINGS = ("max|mean", "max+mean", "recon")


@dataclass(frozen=True)
class SvmPreset:
    name: str
    title: str
    classifier: str                 # "svc" (libsvm SVC(kernel='linear'), one-vs-one) or "linearsvc" (liblinear, OvR)
    C: dict = field(default_factory=dict)   # benchmark -> C; missing: see ``c_for``; empty: chosen (cv)
    points: int = 1024
    points_by: dict = field(default_factory=dict)  # benchmark -> points where the official config says otherwise
    sampling: dict = field(default_factory=dict)  # layout ("h5", "resampled") -> sampling
    pooling: str = "max|mean"
    normalize: bool = True          # centroid at the origin, max norm 1, per cloud, before the encoder
    standardize: bool = False       # features scaled with the training set's mean and std
    data: str = ""                  # the files the official script reads
    source: str = ""                # file, lines, commit
    cite: str = ""                  # short: repository, script, commit
    notes: tuple = ()

    def points_for(self, benchmark: str) -> int:
        return int(self.points_by.get(benchmark, self.points))

    def c_for(self, benchmark: str) -> tuple[float, str]:
        """(C, where it comes from) for ``benchmark``: the official value, or ModelNet40's with a note."""
        if benchmark in self.C:
            return self.C[benchmark], "official"
        if "modelnet40" in self.C:
            return self.C["modelnet40"], f"ModelNet40's C (the official code has no {benchmark} SVM)"
        raise TrainError(f"--svm-protocol {self.name} has no C for {benchmark}")

    def describe(self, benchmark: str = "modelnet40", has_global: bool = False) -> str:
        """One line: what this preset does (printed with every result); ``has_global``: the encoder has
        global (cls) tokens."""
        if self.name == "cv":
            return ("cv (this toolkit): SVC(kernel='linear') on standardized [max ; mean] features, C chosen on "
                    "validation data or by cross-validation on train")
        C, origin = self.c_for(benchmark)
        svm = f"LinearSVC(C={C:g})" if self.classifier == "linearsvc" else f"SVC(kernel='linear', C={C:g})"
        feat = {"max|mean": "[max ; mean] of the local tokens", "max+mean": "max + mean of the local tokens",
                "recon": "[max of the global tokens ; max + mean of the patch tokens]"}[self.pooling]
        if self.pooling == "recon" and not has_global:
            feat = "max + mean of the patch tokens (the encoder has no global token for ReCon's first half)"
        extra = "" if origin == "official" else f" ({origin})"
        return (f"{self.name} ({self.cite}): {svm}{extra} on {feat}, "
                f"{'standardized' if self.standardize else 'not standardized'}, clouds "
                f"{'normalized' if self.normalize else 'as stored'}")


PRESETS = {
    "cv": SvmPreset(
        "cv", "ours: C chosen on val / CV", "svc", {}, 1024, {}, {"h5": "first", "resampled": "fps"}, "max|mean",
        normalize=True, standardize=True, data="any benchmark",
        source="pcssl_train/eval/svm.py (this toolkit)", cite="pcssl_train/eval/svm.py"),
    "recon": SvmPreset(
        "recon", "ReCon", "linearsvc", {"modelnet40": 0.075}, 1024, {}, {"h5": "fps", "resampled": "fps"}, "recon",
        normalize=True, standardize=False,
        data="modelnet40_normal_resampled, modelnet40_{train,test}_8192pts_fps.dat, FPS to 1024",
        source="qizekun/ReCon tools/runner_svm.py L37 LinearSVC(C=0.075), L62 npoints, L68/L81 misc.fps, L71/L83 "
               "base_model(points); models/transformer.py L667 token order, L672 feature; cfgs/svm/modelnet40.yaml "
               "npoints 1024; commit eb37728", cite="ReCon tools/runner_svm.py @eb37728",
        notes=("ReCon has no ScanObjectNN SVM config: other benchmarks use ModelNet40's C",
               "clouds are normalized after sampling (official: pc_normalize on the 8192 cached points, then FPS)",
               "FPS starts at row 0 for train and test (official train loader shuffles first: a random start)")),
    "point-m2ae": SvmPreset(
        "point-m2ae", "Point-M2AE", "svc", {"modelnet40": 0.012, "scanobjectnn": 0.042}, 1024, {"scanobjectnn": 2048},
        {"h5": "first", "resampled": "first"}, "max+mean", normalize=False, standardize=False,
        data="modelnet40_ply_hdf5_2048 (ModelNet40SVM: the first 1024 of 2048 points)",
        source="ZrrSkywalker/Point-M2AE tools/runner_test_svm.py L96 SVC(C=0.012, kernel='linear'), L169 C=0.042 "
               "(ScanObjectNN OBJ-BG), L71/L87 base_model(data, eval=True), commit 66a3e8f; models/Point_M2AE.py "
               "L257-258 x_vis.mean(1) + x_vis.max(1)[0], commit c2e3d3f; ScanObjectNN: cfgs/linear-svm/scan_obj-bg.yaml "
               "-> cfgs/dataset/Scan_OBJ-BG.yaml N_POINTS 2048 (every stored point), commit 154bd3f",
        cite="Point-M2AE tools/runner_test_svm.py @66a3e8f",
        notes=("Point-M2AE's feature is its last (64-token) level; here: the encoder's output tokens",)),
    "crosspoint": SvmPreset(
        "crosspoint", "CrossPoint", "svc", {"modelnet40": 0.1, "scanobjectnn": 0.01}, 1024, {},
        {"h5": "first", "resampled": "first"}, "max|mean", normalize=False, standardize=False,
        data="modelnet40_ply_hdf5_2048 (ModelNet40SVM: the first 1024 of 2048 points)",
        source="MohamedAfham/CrossPoint train_crosspoint.py L167 SVC(C=0.1, kernel='linear'), L142/L158 "
               "point_model(data)[2] (DGCNN [max ; avg]), commit 2fbbe81; eval_ssl.ipynb: C=0.01 for ScanObjectNN",
        cite="CrossPoint train_crosspoint.py @2fbbe81",
        notes=("ScanObjectNN: eval_ssl.ipynb's C = 0.01 ('can be tuned'); its saved run is ScanObjectNN",)),
}


def get_preset(name: str) -> SvmPreset:
    key = str(name).strip().lower()
    if key not in PRESETS:
        raise TrainError(f"unknown --svm-protocol {name!r}: expected one of {', '.join(PRESETS)}")
    return PRESETS[key]


def pool(global_tokens: torch.Tensor | None, local: torch.Tensor, pooling: str) -> torch.Tensor:
    """(B, D') feature of (B, G, D) global tokens (or None) and (B, L, D) local tokens (see module docstring)."""
    mx, mean = local.amax(dim=1), local.mean(dim=1)
    if pooling == "max|mean":
        return torch.cat([mx, mean], dim=-1)
    if pooling == "max+mean":
        return mx + mean
    if pooling == "recon":
        if global_tokens is None:
            return mx + mean
        return torch.cat([global_tokens.amax(dim=1), mx + mean], dim=-1)
    raise ValueError(f"unknown pooling {pooling!r}: expected one of {', '.join(POOLINGS)}")


@torch.no_grad()
def token_features(encoder: torch.nn.Module, points: np.ndarray, pooling="max|mean", normalize: bool = True,
                   batch_size: int = 64, device: str | torch.device = "cpu"):
    """(N, D) float32 features of (N, P, 3) clouds: ``encoder.forward_tokens`` pooled by ``pooling``,
    clouds normalized first when ``normalize``; eval mode. ``pooling`` a tuple: {pooling: features},
    every one from the same single pass of the encoder."""
    many = isinstance(pooling, (tuple, list))
    kinds = tuple(pooling) if many else (pooling,)
    encoder = encoder.to(device).eval()
    clouds = normalize_clouds(points) if normalize else np.ascontiguousarray(points, dtype=np.float32)
    feats: dict = {k: [] for k in kinds}
    for i in range(0, len(clouds), batch_size):
        g, loc = encoder.forward_tokens(torch.from_numpy(clouds[i:i + batch_size]).to(device))
        for k in kinds:
            feats[k].append(pool(g, loc, k).float().cpu())
    out = {k: torch.cat(v).numpy() if v else np.zeros((0, 0), np.float32) for k, v in feats.items()}
    return out if many else out[kinds[0]]


def fixed_svm(train_x: np.ndarray, train_y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, classifier: str,
              C: float, do_standardize: bool = False, seed: int = 0) -> dict:
    """Fit the preset's SVM with its fixed C on train, score test once."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.svm import SVC, LinearSVC

    if len(np.unique(train_y)) < 2:
        raise TrainError("linear SVM needs at least 2 classes in the training set")
    if do_standardize:
        train_x, test_x = standardize(train_x, test_x)
    # LinearSVC: dual=True was sklearn's default when ReCon's script was written (sklearn >= 1.5 picks the
    # solver itself); the official call passes only C.
    clf = LinearSVC(C=C, dual=True, random_state=seed) if classifier == "linearsvc" else \
        SVC(C=C, kernel="linear", random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        clf.fit(train_x, train_y)
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    pred = clf.predict(test_x)
    return {"test_accuracy": accuracy(pred, test_y), "C": float(C), "converged": converged,
            "train_size": int(len(train_y)), "test_size": int(len(test_y)), "feature_dim": int(train_x.shape[1]),
            "predictions": np.asarray(pred)}
