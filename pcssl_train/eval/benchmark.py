"""``pcssl-train benchmark``: proof of learning on the embedded mini-ShapeNet.

1. Synthesizes and renders the mini-ShapeNet (``cma-build synth`` + ``render`` at 64 px, 4 views,
   8 samples), or reuses ``--data``.
2. Pretrains each method with its CPU-sized ``<method>-tiny`` config on the train split, keeping a
   checkpoint every ``eval_every`` epochs. A finished run is reused; a killed one resumes.
3. Scores each kept checkpoint, and the same encoder at random init, by a linear SVM (C chosen on
   the val split, or by cross-validation on train when the val split is small: see ``svm.py``) on
   frozen features, and finally also by N-way K-shot few-shot (``ways``/``shots``, default 5-way
   10-shot; 10 trials).

Before any work (before synthesizing, rendering or pretraining) the few-shot setting is checked
against the dataset (``--data``: its index and per-view point counts; otherwise the mini-ShapeNet
it will synthesize, whose split follows from the model ids): it needs ``ways`` classes with a test
view and at least ``shots`` training samples. An impossible setting is a one-line error saying
what the dataset has and which ``--ways`` / ``--shots`` would work.

The evaluation samples are single-view clouds (256 points by FPS from each rendered view of an object,
rotated about the up axis by a seeded random angle): the partial, arbitrarily oriented clouds a depth sensor
gives. The SVM is trained on one seeded view per training object (one sample per object, as in ModelNet40)
and scored on every view of every test object; the few-shot support sets are distinct training objects (one
view each) when ``ways`` classes have ``shots`` training objects, and otherwise single views of the training
objects (several views of one object can then be in a support set; the results say which, as
``fewshot_support``: the mini-ShapeNet of ``make demo``, 2 to 8 training objects per class, needs this for
10 shots). Also reported: the SVM trained on every view of the training objects ("all views") and on whole
fused clouds ("fused"); on these easier settings a random-init encoder already separates the 8 distinct
categories almost perfectly. Splits are by object, so no view of a test object is seen in training.

Outputs in OUT: results.csv, results.json (with per-epoch histories), results.md, accuracy.png.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from ..data import CmaDataset
from ..errors import TrainError
from ..methods import METHODS  # every registered method, in registration order
from .features import extract_features, load_spec
from .fewshot import few_shot
from .pointset import PointSet
from .readers import read_cma
from .svm import c_choice, linear_svm

RENDER_ARGS = ["--resolution", "64", "--views", "4", "--samples", "8", "--view-points", "512",
               "--fused-points", "2048"]


def ensure_dataset(out: Path, per_category: int, seed: int) -> Path:
    """Synthesize + render the mini-ShapeNet under OUT (both steps skip work already done)."""
    tree, data = out / "mini-shapenet", out / "dataset"
    cli = [sys.executable, "-m", "cma_builder.cli"]
    if not (tree / "taxonomy.json").is_file():
        _run(cli + ["synth", "--out", str(tree), "--per-category", str(per_category), "--seed", str(seed)])
    _run(cli + ["render", "--shapenet", str(tree), "--out", str(data), *RENDER_ARGS])
    return data


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd[2:] if cmd[:1] == [sys.executable] else cmd), file=sys.stderr)
    if subprocess.run(cmd).returncode:
        raise TrainError(f"'{' '.join(cmd[2:])}' failed (see its message above)")


def view_clouds(root: Path, split: str, num_points: int = 256, seed: int = 0) -> PointSet:
    """Every non-empty rendered view of every object in ``split`` as one cloud (FPS), rotated
    about +y by an angle from ``default_rng([seed, object, view])``."""
    first = CmaDataset(root, kind="view", split=split, num_points=num_points, sampling="fps", normalize=False,
                       image=False, view_choice=0)
    views = len(first.view_point_counts(0))
    points, labels, ids = [], [], []
    for v in range(views):
        ds = first if v == 0 else CmaDataset(root, kind="view", split=split, num_points=num_points, sampling="fps",
                                             normalize=False, image=False, view_choice=v)
        for i in range(len(ds)):
            if int(ds.view_point_counts(i)[v]) < 16:
                continue
            angle = np.random.default_rng([seed, i, v]).uniform(0, 2 * np.pi)
            c, s = np.cos(angle), np.sin(angle)
            rot = np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], np.float32)
            points.append(ds[i]["points"].numpy() @ rot.T)
            labels.append(ds.labels[i])
            obj = ds.objects[i]
            ids.append(f"{obj.synset_id}/{obj.model_id}/view{v}")
    names = first.category_names or first.label_names
    return PointSet(np.stack(points), np.array(labels), list(names), ids=ids, name=f"cma-views/{split}")


def one_view_per_object(views: PointSet, seed: int = 0) -> np.ndarray:
    """Indices of one seeded random view of each object of a :func:`view_clouds` set."""
    objects: dict[str, list[int]] = {}
    for i, name in enumerate(views.ids):
        objects.setdefault(name.rsplit("/", 1)[0], []).append(i)
    rng = np.random.default_rng([seed, len(views)])
    return np.array(sorted(int(rng.choice(v)) for v in objects.values()), dtype=np.int64)


MIN_VIEW_POINTS = 16  # a rendered view with fewer points is left out of the evaluation clouds
SUPPORT = {"objects": "one view per training object", "views": "single views of the training objects"}


def _count(counts: dict, what: str, category: str, n: int = 1) -> None:
    counts.setdefault(what, {}).setdefault(category, 0)
    counts[what][category] += n


def split_counts(data: Path) -> dict:
    """Per class name: training objects, training views and test views that :func:`view_clouds` would
    give (views with at least ``MIN_VIEW_POINTS`` points), from the dataset's index and per-view point
    counts only (no cloud is read). Keys ``train_objects``, ``train_views``, ``test_views``."""
    counts: dict = {"train_objects": {}, "train_views": {}, "test_views": {}}
    for split in ("train", "test"):
        try:
            ds = CmaDataset(data, kind="view", split=split, num_points=1, image=False, view_choice=0)
        except TrainError as e:  # an empty split counts nothing (fewshot_support then says so)
            if f"no rendered objects in split {split}" in str(e):
                continue
            raise
        names = ds.category_names or ds.label_names
        for i in range(len(ds)):
            n = int((ds.view_point_counts(i) >= MIN_VIEW_POINTS).sum())
            name = names[ds.labels[i]] if 0 <= ds.labels[i] < len(names) else str(ds.labels[i])
            if n:
                _count(counts, f"{split}_views", name, n)
                if split == "train":
                    _count(counts, "train_objects", name)
    return counts


def synth_counts(tree: Path, per_category: int, seed: int, views: int) -> dict:
    """Like :func:`split_counts` for the mini-ShapeNet ``ensure_dataset`` will render (an existing
    ``tree``, or the one ``cma-build synth`` will write): the split of a model follows from its id, and
    every one of its ``views`` is assumed to see it (an upper bound, checked again after rendering)."""
    from cma_builder.source.splits import SplitSpec
    from cma_builder.source.synth import CATEGORY_IDS, model_id
    from cma_builder.source.taxonomy import Taxonomy

    spec, taxonomy = SplitSpec.bundled(), Taxonomy.bundled()
    if (tree / "taxonomy.json").is_file():
        models = {d.name: [m.name for m in d.iterdir() if (m / "models").is_dir()]
                  for d in tree.iterdir() if d.is_dir() and d.name.isdigit()}
    else:
        models = {s: [model_id(seed, s, i) for i in range(per_category)] for s in CATEGORY_IDS}
    counts: dict = {"train_objects": {}, "train_views": {}, "test_views": {}}
    for synset, ids in sorted(models.items()):
        name = taxonomy.category_name(synset)
        for mid in ids:
            split = spec.assign(mid)
            if split in ("train", "test"):
                _count(counts, f"{split}_views", name, views)
                if split == "train":
                    _count(counts, "train_objects", name)
    return counts


def fewshot_support(counts: dict, ways: int, shots: int, where: str = "this dataset") -> str:
    """Which few-shot support pool an N-way K-shot setting uses: ``"objects"`` (one view per training
    object) when ``ways`` classes with a test view have ``shots`` training objects, else ``"views"``
    (any single view of a training object) when they have ``shots`` training views; otherwise a
    one-line TrainError that says what ``where`` has and which --ways / --shots would work."""
    if ways < 2 or shots < 1:
        raise TrainError(f"few-shot needs --ways of at least 2 and --shots of at least 1 (got {ways}-way "
                         f"{shots}-shot)")
    tested = [c for c in counts["test_views"] if counts["test_views"][c] > 0]
    if not tested or not any(counts["train_views"].get(c, 0) for c in tested):
        which = "test object" if not tested else "training object of a class with a test object"
        raise TrainError(f"{ways}-way {shots}-shot few-shot needs training and test views of the same classes; {where} "
                         f"has no {which} (with a usable view), so no --ways / --shots setting would work")
    for pool in ("objects", "views"):
        if sum(counts[f"train_{pool}"].get(c, 0) >= shots for c in tested) >= ways:
            return pool
    have = sorted(((counts["train_views"].get(c, 0), c) for c in tested), reverse=True)
    sizes = [n for n, _ in have]
    fits = sum(n >= shots for n in sizes)
    hints = []
    if fits >= 2:
        hints.append(f"--ways {fits}")
    if len(sizes) >= ways and sizes[ways - 1] >= 1:
        hints.append(f"--shots {sizes[ways - 1]}")
    if not hints and len(sizes) >= 2 and sizes[1] >= 1:
        hints.append(f"--ways 2 --shots {sizes[1]}")
    listed = ", ".join(f"{c} {n}" for n, c in have) or "none"
    fix = f"; {' or '.join(hints)} would work" if hints else "; no --ways / --shots setting would work"
    raise TrainError(f"{ways}-way {shots}-shot few-shot needs {ways} classes with a test view and at least {shots} "
                     f"training views; {where} has {fits} (training views of each class with a test view: "
                     f"{listed}){fix}")


def _view_counts(train: PointSet, test: PointSet) -> dict:
    """:func:`split_counts` of the evaluation clouds themselves."""
    counts: dict = {"train_objects": {}, "train_views": {}, "test_views": {}}
    for key, ps in (("train_views", train), ("test_views", test)):
        for label in ps.labels:
            _count(counts, key, ps.class_names[label])
    for label in {i.rsplit("/", 1)[0]: lab for i, lab in zip(train.ids, train.labels)}.values():
        _count(counts, "train_objects", train.class_names[label])
    return counts


def _scores(spec, sets: dict, seed: int, full: bool = True, ways: int = 5, shots: int = 10) -> tuple[dict, np.ndarray]:
    """``svm_views``: linear SVM trained (and C chosen) on one view per object, scored on every test
    view; with ``full`` also ``svm_views_all`` (trained on every view), ``svm_fused`` and N-way K-shot
    (support: ``sets["fewshot_train"]`` of the training views; queries: test views). Also returns which
    test views the ``svm_views`` SVM got right (for the paired bootstrap). A dataset without a val
    split (``None`` in ``sets``) has C chosen by cross-validation on train."""
    enc = spec.build(seed)
    tr, va, te = sets["views"]
    sel_tr, sel_va = sets["one_view"]
    f = [None if s is None else extract_features(enc, s.points) for s in (tr, va, te)]
    val_one = (None, None) if va is None else (f[1][sel_va], va.labels[sel_va])
    svm = linear_svm(f[0][sel_tr], tr.labels[sel_tr], f[2], te.labels, *val_one, seed=seed, predictions=True)
    out = {"svm_views": svm["test_accuracy"], "svm_views_C": svm["C"], "svm_views_C_chosen": c_choice(svm)}
    if full:
        objects = np.array([i.rsplit("/", 1)[0] for i in tr.ids])  # CV folds keep an object's views together
        out["svm_views_all"] = linear_svm(f[0], tr.labels, f[2], te.labels, f[1], None if va is None else va.labels,
                                          seed=seed, groups=objects)["test_accuracy"]
        pool = sets["fewshot_train"]
        fs = few_shot(f[0][pool], tr.labels[pool], f[2], te.labels, ways=ways, shots=shots, trials=10, queries=20,
                      seed=seed)
        out.update(fewshot_mean=fs["mean"], fewshot_std=fs["std"], fewshot_min_queries=fs["min_queries_per_class"])
        ftr, fva, fte = sets["fused"]
        g = [None if s is None else extract_features(enc, s.points) for s in (ftr, fva, fte)]
        out["svm_fused"] = linear_svm(g[0], ftr.labels, g[2], fte.labels, g[1], None if fva is None else fva.labels,
                                      seed=seed)["test_accuracy"]
    return out, svm["predictions"] == te.labels


def _optional_val(read, *args, **kwargs):
    """``read(..., "val", ...)``, or None when the dataset has no rendered object in its val split."""
    try:
        return read(*args, **kwargs)
    except TrainError as e:
        if "no rendered objects in split val" in str(e):
            return None
        raise


def paired_bootstrap(correct_a: np.ndarray, correct_b: np.ndarray, groups: list[str], resamples: int = 2000,
                     seed: int = 0) -> tuple[float, float]:
    """95% percentile interval of accuracy(a) - accuracy(b) on the same test samples, resampling
    whole groups (test objects: their views are not independent) with replacement."""
    _, inv = np.unique(np.asarray(groups), return_inverse=True)
    diff = np.bincount(inv, weights=correct_a.astype(float) - correct_b.astype(float))
    size = np.bincount(inv).astype(float)
    draws = np.random.default_rng(seed).integers(0, len(diff), (resamples, len(diff)))
    lo, hi = np.percentile(diff[draws].sum(1) / size[draws].sum(1), [2.5, 97.5])
    return float(lo), float(hi)


def run_benchmark(out: Path, methods=METHODS, data: Path | None = None, per_category: int = 48, epochs: int = 60,
                  eval_every: int = 15, batch_size: int = 16, seed: int = 0, device: str | None = None,
                  progress: bool | None = None, command: str = "", ways: int = 5, shots: int = 10,
                  random_seeds: int = 5) -> dict:
    """Run the benchmark (see the module docstring). The ``ways``-way ``shots``-shot setting is checked
    first, before anything is synthesized, rendered or trained (:func:`fewshot_support`)."""
    from ..engine.config import load_config
    from ..engine.trainer import pretrain

    if data is not None:
        fewshot_support(split_counts(data), ways, shots, str(data))
    else:
        if per_category < 1:
            raise TrainError(f"--per-category must be at least 1, got {per_category}")
        tree, views_each = out / "mini-shapenet", int(RENDER_ARGS[RENDER_ARGS.index("--views") + 1])
        fewshot_support(synth_counts(tree, per_category, seed, views_each), ways, shots,
                        f"the mini-ShapeNet in {tree}" if (tree / "taxonomy.json").is_file() else
                        f"the mini-ShapeNet of {per_category} models per category (seed {seed})")
    out.mkdir(parents=True, exist_ok=True)
    data = data or ensure_dataset(out, per_category, seed)
    views = (view_clouds(data, "train", seed=seed), _optional_val(view_clouds, data, "val", seed=seed),
             view_clouds(data, "test", seed=seed))
    support = fewshot_support(_view_counts(views[0], views[2]), ways, shots, str(data))  # as rendered
    one_view = tuple(None if v is None else one_view_per_object(v, seed) for v in views[:2])
    sets = {"views": views, "one_view": one_view,
            "fewshot_train": one_view[0] if support == "objects" else np.arange(len(views[0])),
            "fused": (read_cma(data, "train", num_points=1024, seed=seed),
                      _optional_val(read_cma, data, "val", num_points=1024, seed=seed),
                      read_cma(data, "test", num_points=1024, seed=seed))}
    n = _sizes(sets)
    print(f"evaluation clouds (train/val/test): views {'/'.join(map(str, n['views']))} "
          f"(one per object: {'/'.join(map(str, n['one_view']))}), fused {'/'.join(map(str, n['fused']))}; "
          f"{ways}-way {shots}-shot support: {SUPPORT[support]}", file=sys.stderr)
    results = []
    for method in methods:
        cfg = load_config(None, f"{method}-tiny", (
            "data.split=train", f"optim.epochs={epochs}", f"optim.batch_size={batch_size}", "optim.warmup_epochs=1",
            f"train.keep_every={eval_every}", "train.tensorboard=false", "train.log_every=10", f"train.seed={seed}"))
        run = out / "runs" / method
        t0 = time.perf_counter()
        done = pretrain(cfg, data, run, device, progress)
        timing = run / "benchmark-pretrain.json"
        if "loss" in done or not timing.is_file():  # this call trained (a reused run keeps its record)
            timing.write_text(json.dumps({"seconds": time.perf_counter() - t0, "loss": done.get("loss")}))
        seconds, final_loss = (json.loads(timing.read_text())[k] for k in ("seconds", "loss"))
        final = load_spec(run)
        random_init = final.random_init()
        rand, rand_correct = _scores(random_init, sets, seed, ways=ways, shots=shots)
        others = [_scores(random_init, sets, s, False)[0]["svm_views"] for s in range(seed + 1, seed + random_seeds)]
        history = [{"epoch": 0, **rand}]
        for e in range(eval_every, epochs, eval_every):
            history.append({"epoch": e, **_scores(load_spec(run, str(e)), sets, seed, False)[0]})
        pre, pre_correct = _scores(final, sets, seed, ways=ways, shots=shots)
        history.append({"epoch": final.epoch, **pre})
        objects = [i.rsplit("/", 1)[0] for i in sets["views"][2].ids]
        seeds_acc = [rand["svm_views"], *others]
        row = {"method": method, "epochs": epochs, "seed": seed, "steps": done["step"],
               "encoder": final.name, "encoder_params": sum(p.numel() for p in final.build(seed).parameters()),
               "pretrain_seconds": round(seconds, 1), "final_loss": final_loss,
               **{f"pretrained_{k}": v for k, v in pre.items()}, **{f"random_{k}": v for k, v in rand.items()},
               "fewshot": f"{ways}-way {shots}-shot", "fewshot_support": SUPPORT[support],
               "svm_views_difference_ci95": paired_bootstrap(pre_correct, rand_correct, objects, seed=seed),
               "random_svm_views_seeds": seeds_acc, "random_svm_views_seeds_mean": float(np.mean(seeds_acc)),
               "random_svm_views_seeds_std": float(np.std(seeds_acc)), "history": history}
        row["beats_random_init"] = bool(row["pretrained_svm_views"] > row["random_svm_views"])
        row["beats_random_seeds_mean"] = bool(row["pretrained_svm_views"] > row["random_svm_views_seeds_mean"])
        results.append(row)
        print(f"{method}: SVM (views) {row['pretrained_svm_views']:.3f} pretrained vs {row['random_svm_views']:.3f} "
              f"random init", file=sys.stderr)
        write_results(out, results, data, command, sets)
    return {"results": results, "out": str(out)}


def write_results(out: Path, results: list[dict], data: Path, command: str, sets: dict) -> None:
    import csv

    meta = {"command": command, "dataset": str(data), "torch": torch.__version__,
            "evaluation": _sizes(sets)}  # one_view: train, val
    (out / "results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    flat = [{k: " ".join(format(x, ".4f") for x in v) if isinstance(v, (list, tuple)) else v
             for k, v in r.items() if k != "history"} for r in results]
    with open(out / "results.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, list(flat[0]))
        w.writeheader()
        w.writerows(flat)
    (out / "results.md").write_text(markdown(results, meta))
    plot(results, out / "accuracy.png")


def _sizes(sets: dict) -> dict:
    """Samples of each evaluation set (0 for a missing val split)."""
    return {k: [0 if s is None else len(s) for s in sets[k]] for k in ("views", "one_view", "fused")}


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def _pair(r: dict, key: str) -> str:
    """'pretrained | random init' cells, the better one in bold."""
    a, b = r[f"pretrained_{key}"], r[f"random_{key}"]
    fa, fb = _pct(a), _pct(b)
    if key == "fewshot_mean":
        fa += f" ± {_pct(r['pretrained_fewshot_std'])}"
        fb += f" ± {_pct(r['random_fewshot_std'])}"
    return f"{'**' + fa + '**' if a > b else fa} | {'**' + fb + '**' if b > a else fb}"


def markdown(results: list[dict], meta: dict) -> str:
    n = meta["evaluation"]
    fs = results[0]["fewshot"] if results else "few-shot"
    one = n.get("one_view", ["?", "?"])
    lines = [f"`{meta['command']}`" if meta["command"] else "", "",
             f"Dataset {meta['dataset']}; torch {meta['torch']}. Evaluation clouds (train/val/test): single views "
             f"{'/'.join(map(str, n['views']))} (one per object for training: {one[0]}/{one[1]}), fused "
             f"{'/'.join(map(str, n['fused']))}.", "",
             f"| method | encoder | epochs | SVM, 1 view per object: pretrained | random init | difference (95% CI) "
             f"| random init, {len(results[0]['random_svm_views_seeds']) if results else '?'} seeds "
             f"| {fs}: pretrained | random init | SVM, all views: pretrained | random init | SVM, fused: pretrained "
             f"| random init | pretrain s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        secs = "-" if r["pretrain_seconds"] is None else format(r["pretrain_seconds"], ".0f")
        lo, hi = r["svm_views_difference_ci95"]
        diff = f"{100 * (r['pretrained_svm_views'] - r['random_svm_views']):+.1f} ({100 * lo:+.1f}, {100 * hi:+.1f})"
        seeds = f"{_pct(r['random_svm_views_seeds_mean'])} ± {_pct(r['random_svm_views_seeds_std'])}"
        lines.append(f"| {r['method']} | {r['encoder']} ({r['encoder_params'] / 1e6:.2f}M) | {r['epochs']} | "
                     f"{_pair(r, 'svm_views')} | {diff} | {seeds} | {_pair(r, 'fewshot_mean')} | "
                     f"{_pair(r, 'svm_views_all')} | {_pair(r, 'svm_fused')} | {secs} |")
    lines += ["", "Test accuracy in % (few-shot: mean ± std over 10 trials); the better of each pair in bold; "
              "seed " + ", ".join(sorted({str(r["seed"]) for r in results})) + ". Difference: pretrained minus "
              "random init on the same test views, with a 95% paired bootstrap interval over test objects (2000 "
              "resamples). Random init, N seeds: the same architecture initialized with seeds seed..seed+N-1 "
              "(mean ± std)."]
    notes = []
    if results and results[0].get("fewshot_support"):
        notes.append(f"Few-shot support: {results[0]['fewshot_support']}.")
    rules = sorted({r[f"{k}_svm_views_C_chosen"] for r in results for k in ("pretrained", "random")
                    if f"{k}_svm_views_C_chosen" in r})
    if rules:
        notes.append(f"C of the SVM on 1 view per object: {'; '.join(rules)} (C of each row: results.json).")
    if notes:
        lines += ["", " ".join(notes)]
    return "\n".join(lines) + "\n"


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=120)
    for r in results:
        h = r["history"]
        ax.plot([x["epoch"] for x in h], [100 * x["svm_views"] for x in h], marker="o", label=r["method"])
    ax.set_xlabel("pretraining epoch (0 = random init)")
    ax.set_ylabel("linear SVM test accuracy (%)\n(1 view per training object, all test views)", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
