"""``pcssl-train eval``: one protocol on one benchmark for one encoder, results as JSON/CSV/markdown."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from cma_builder.atomic import atomic_write

from ..errors import TrainError
from .features import extract_features, load_spec
from .fewshot import few_shot
from .finetune import FinetuneConfig, finetune_classifier
from .readers import load_benchmark
from .svm import c_choice, linear_svm

DEFAULT_POINTS = {"modelnet40": 1024, "scanobjectnn": 2048, "shapenetpart": 2048, "cma": 1024}
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
                 device=None, progress: bool | None = None, out: Path | None = None) -> dict:
    spec = load_spec(encoder, which)
    if random_init:
        spec = spec.random_init()
    n = num_points or DEFAULT_POINTS[benchmark]
    device = device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")

    def load(split):
        return load_benchmark(benchmark, root, split, variant=variant, num_points=n, seed=seed)

    result = {"encoder": spec.source, "encoder_name": spec.name, "method": spec.method, "pretrain_epoch": spec.epoch,
              "benchmark": benchmark, "variant": variant, "root": str(root), "points": n, "seed": seed}
    if protocol == "partseg":
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
        val = None
        if benchmark in HAS_VAL:
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
        else:
            enc = spec.build(seed)
            fx = {k: extract_features(enc, s.points, device=device) for k, s in
                  (("train", train), ("test", test)) + ((("val", val),) if val is not None else ())}
            if protocol == "svm":
                r = linear_svm(fx["train"], train.labels, fx["test"], test.labels, fx.get("val"),
                               None if val is None else val.labels, seed=seed)
                result.update(r)
                result["summary"] = (f"linear SVM: test accuracy {_pct(r['test_accuracy'])} on {r['test_size']} test "
                                     f"clouds; C={r['C']:g} {c_choice(r)}")
            else:
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
                result.update(protocol="fewshot", settings=rows, skipped=skipped)
                result["summary"] = "\n".join(
                    [f"{r['ways']}-way {r['shots']}-shot: {100 * r['mean']:.2f} ± {100 * r['std']:.2f} % "
                     f"({r['trials']} trials, {r['min_queries_per_class']}+ queries per class)" for r in rows]
                    + [f"skipped: {m}" for m in skipped])
    if out is not None:
        write(result, Path(out))
    return result


def write(result: dict, out: Path) -> None:
    """OUT (JSON), OUT.csv (one row per score) and OUT.md (the summary), each replaced atomically (a
    link in their place is replaced, never written through)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(out) as fh:
        fh.write(json.dumps(result, indent=1, default=str))
    base = {k: result[k] for k in ("encoder", "method", "pretrain_epoch", "benchmark", "variant", "points", "seed",
                                   "protocol")}
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
