"""``pcssl-train eval``: one protocol on one benchmark for one encoder, results as JSON/CSV/markdown."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from cma_builder.atomic import atomic_write

from ..errors import TrainError
from .features import extract_features, load_spec
from .fewshot import few_shot
from .finetune import FinetuneConfig, finetune_classifier
from .readers import load_benchmark, modelnet_layout
from .svm import c_choice, linear_svm
from .svm_presets import fixed_svm, get_preset, token_features

DEFAULT_POINTS = {"modelnet40": 1024, "modelnet10": 1024, "scanobjectnn": 2048, "shapenetpart": 2048, "cma": 1024}
HAS_VAL = ("shapenetpart", "cma")  # the others have train/test only: SVM C is chosen on a hold-out of train
# (or, when val or hold-out is small, by cross-validation on train: see svm.py)


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in str(text).split(",") if v.strip()]
    except ValueError:
        raise TrainError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise TrainError(f"{what} must be positive integers, got {text!r}")
    return values


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def run_protocol(encoder, protocol: str, benchmark: str, root, variant=None, num_points=None, random_init=False,
                 which="last", ways="5,10", shots="10,20", trials=10, epochs=None, batch_size=None, seed=0,
                 device=None, progress: bool | None = None, out: Path | None = None, svm_protocol: str = "cv",
                 sampling: str | None = None, folds=None) -> dict:
    spec = load_spec(encoder, which)
    if random_init:
        spec = spec.random_init()
    preset = get_preset(svm_protocol)
    if protocol != "svm" and svm_protocol != "cv":
        raise TrainError(f"--svm-protocol applies to -p svm, not -p {protocol}")
    if folds is not None and protocol != "fewshot":
        raise TrainError(f"--folds applies to -p fewshot, not -p {protocol}")
    if protocol == "svm" and svm_protocol != "cv":
        n = num_points or preset.points_for(benchmark)
    else:
        n = num_points or DEFAULT_POINTS[benchmark]
    spec.check_points(n, "--points: ")
    device = device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    if sampling is None and protocol == "svm" and svm_protocol != "cv" and benchmark in ("modelnet40", "modelnet10"):
        sampling = preset.sampling[modelnet_layout(root, int(benchmark[8:]))]
    elif sampling is None and protocol == "svm" and svm_protocol != "cv" and benchmark == "scanobjectnn":
        sampling = preset.sampling["h5"]

    def load(split):
        return load_benchmark(benchmark, root, split, variant=variant, num_points=n, seed=seed, sampling=sampling,
                              progress=progress)

    result = {"encoder": spec.source, "encoder_name": spec.name, "method": spec.method, "pretrain_epoch": spec.epoch,
              "benchmark": benchmark, "variant": variant, "root": None if root is None else str(root), "points": n,
              "seed": seed}
    if protocol == "fewshot" and folds is not None:
        result.update(fewshot_on_folds(spec, folds, ways, shots, n, sampling or "fps", seed, device, progress))
        result["root"] = str(folds)
    elif protocol == "partseg":
        from .partseg import finetune_partseg

        if benchmark != "shapenetpart":
            raise TrainError("--protocol partseg needs --benchmark shapenetpart (per-point part labels)")
        if spec.name != "point_transformer":
            raise TrainError(f"part segmentation needs a point_transformer encoder (got {spec.name})")
        kw = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size)) if v is not None}
        r = finetune_partseg(spec.config, spec.state_dict, load("trainval"), load("test"), seed=seed,
                             device=device, progress=progress, **kw)
        result.update(protocol="partseg", **r)
        result["summary"] = (f"part segmentation: instance mIoU {_pct(r['instance_miou'])}, category mIoU "
                             f"{_pct(r['category_miou'])} (last epoch)")
    else:
        train, test = load("train"), load("test")
        result["data"] = data_origin(train, test)
        val = None
        if benchmark in HAS_VAL and preset.name == "cv":
            try:
                val = load("val")
            except TrainError as e:  # a small cma dataset may have no object in val: C by CV on train
                if benchmark != "cma" or "no rendered objects in split val" not in str(e):
                    raise
        if protocol == "finetune":
            cfg = FinetuneConfig(seed=seed, **{k: v for k, v in (("epochs", epochs), ("batch_size", batch_size))
                                               if v is not None})
            r = finetune_classifier(spec, train, test, val, cfg, device, progress)
            result.update(r)
            result["summary"] = (f"fine-tuning: test accuracy {_pct(r['test_accuracy'])} at the last epoch, "
                                 f"{_pct(r['test_accuracy_vote'])} with {r['votes']}-vote")
        elif protocol == "svm":
            result.update(svm_scores(spec.build(seed), preset, benchmark, train, test, val, seed, device))
        else:
            enc = spec.build(seed)
            fx = {k: extract_features(enc, s.points, device=device) for k, s in (("train", train), ("test", test))}
            rows, skipped = [], []
            for w in _ints(ways, "--ways"):
                for k in _ints(shots, "--shots"):
                    try:
                        rows.append(few_shot(fx["train"], train.labels, fx["test"], test.labels, w, k, trials,
                                             seed=seed))
                    except TrainError as e:  # e.g. 10-way on a dataset of 8 classes: skip that setting
                        skipped.append(str(e))
            if not rows:
                raise TrainError(skipped[0])
            result.update(protocol="fewshot", settings=rows, skipped=skipped, episodes="drawn (seeded)")
            result["summary"] = "\n".join(
                [f"{r['ways']}-way {r['shots']}-shot: {100 * r['mean']:.2f} ± {100 * r['std']:.2f} % "
                 f"({r['trials']} trials, {r['min_queries_per_class']}+ queries per class)" for r in rows]
                + [f"skipped: {m}" for m in skipped])
    if out is not None:
        write(result, Path(out))
    return result


def data_origin(train, test) -> str:
    """Which files and sampling the clouds came from ("train: ...; test: ..." when the splits differ)."""
    a, b = train.origin or train.name, test.origin or test.name
    if a == b:
        return a
    if a == b.replace("_test_", "_train_").replace("/test", "/train"):
        return a.replace("_train_", "_{train,test}_").replace("/train", "/{train,test}")
    return f"train: {a}; test: {b}"


def svm_scores(enc, preset, benchmark: str, train, test, val=None, seed: int = 0, device="cpu") -> dict:
    """The SVM result of one preset (``cv``: C chosen as svm.py says; others: the official fixed C)."""
    data = data_origin(train, test)
    if preset.name == "cv":
        fx = {k: extract_features(enc, s.points, device=device) for k, s in
              (("train", train), ("test", test)) + ((("val", val),) if val is not None else ())}
        r = linear_svm(fx["train"], train.labels, fx["test"], test.labels, fx.get("val"),
                       None if val is None else val.labels, seed=seed)
        r.update(svm_protocol="cv", protocol_line=preset.describe(benchmark))
        r["summary"] = (f"linear SVM [cv]: test accuracy {_pct(r['test_accuracy'])} on {r['test_size']} test clouds; "
                        f"C={r['C']:g} {c_choice(r)}\nprotocol: {preset.describe(benchmark)}; data: {data}")
        return r
    C, origin = preset.c_for(benchmark)
    has_global = getattr(enc, "cls_token", None) is not None
    ftr, fte = (token_features(enc, s.points, preset.pooling, preset.normalize, device=device) for s in (train, test))
    r = fixed_svm(ftr, train.labels, fte, test.labels, preset.classifier, C, preset.standardize, seed)
    r.pop("predictions")
    r.update(protocol="svm", svm_protocol=preset.name, C_origin=origin, pooling=preset.pooling,
             normalized=preset.normalize, standardized=preset.standardize, classifier=preset.classifier,
             protocol_line=preset.describe(benchmark, has_global), official_source=preset.source, official_data=preset.data,
             val_source="none: C fixed by the official code")
    note = "" if r["converged"] else " (the solver stopped at its iteration limit, as the official call would)"
    r["summary"] = (f"linear SVM [{preset.name}]: test accuracy {_pct(r['test_accuracy'])} on {r['test_size']} test "
                    f"clouds{note}\nprotocol: {preset.describe(benchmark, has_global)}; data: {data}; official data: {preset.data}")
    return r


def fewshot_on_folds(spec, folds, ways, shots, num_points: int, sampling: str, seed: int, device,
                     progress: bool | None = None) -> dict:
    """Few-shot on the official folds: per fold, the SVM of :func:`few_shot` (standardized features,
    C = 0.1) fit on the fold's support set and scored on its queries; mean ± std (numpy's, ddof 0)
    over the folds of each setting present in FOLDS and asked for by --ways / --shots."""
    from .fewshot_folds import available, fold_accuracies, read_folds

    enc = spec.build(seed)
    have = available(folds)
    rows, skipped = [], []
    for w in _ints(ways, "--ways"):
        for k in _ints(shots, "--shots"):
            if (w, k) not in have:
                skipped.append(f"{w}-way {k}-shot: no {w}way_{k}shot folder in {folds}")
                continue
            accs = np.array(fold_accuracies(enc, read_folds(have[(w, k)], w, k, num_points, sampling, progress),
                                            device, seed))
            rows.append({"protocol": "fewshot", "ways": w, "shots": k, "trials": len(accs), "folds": "official",
                         "C": 0.1, "mean": float(accs.mean()), "std": float(accs.std()),
                         "accuracies": [float(a) for a in accs], "min_queries_per_class": None})
    if not rows:
        raise TrainError(skipped[0] if skipped else f"--folds {folds}: no fold folder matches --ways {ways} "
                                                    f"--shots {shots}")
    summary = [f"{r['ways']}-way {r['shots']}-shot: {100 * r['mean']:.2f} ± {100 * r['std']:.2f} % (mean ± std over "
               f"{r['trials']} official folds)" for r in rows] + [f"skipped: {m}" for m in skipped]
    return {"protocol": "fewshot", "settings": rows, "skipped": skipped, "episodes": "official folds",
            "data": f"{folds} ({num_points} points, {sampling})", "summary": "\n".join(summary)}


def write(result: dict, out: Path) -> None:
    """OUT (JSON), OUT.csv (one row per score) and OUT.md (the summary), each replaced atomically (a
    link in their place is replaced, never written through)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as fh:
        fh.write(json.dumps(result, indent=1, default=str))
    base = {k: result[k] for k in ("encoder", "method", "pretrain_epoch", "benchmark", "variant", "points", "seed",
                                   "protocol")}
    if "svm_protocol" in result:
        base["svm_protocol"] = result["svm_protocol"]
    if result["protocol"] == "fewshot":
        rows = [{**base, "ways": r["ways"], "shots": r["shots"], "metric": "accuracy_mean", "value": r["mean"],
                 "std": r["std"]} for r in result["settings"]]
    else:
        metrics = ("test_accuracy", "test_accuracy_vote", "test_accuracy_at_best_val", "instance_miou", "category_miou")
        rows = [{**base, "metric": m, "value": result[m]} for m in metrics if m in result]
    with atomic_write(out.with_suffix(".csv"), newline="") as fh:
        w = csv.DictWriter(fh, list(dict.fromkeys(k for r in rows for k in r)))
        w.writeheader()
        w.writerows(rows)
    with atomic_write(out.with_suffix(".md")) as fh:
        fh.write(f"**{result['protocol']}** on {result['benchmark']}{'/' + result['variant'] if result['variant'] else ''}"
                 f", encoder `{result['encoder']}`\n\n" + result["summary"] + "\n")
