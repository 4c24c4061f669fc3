"""``pcssl-train report``: one run's numbers in the papers' table layout, beside the published rows.

For a run (or any encoder) and, at random init, the same architecture, it scores:

* linear SVM on ModelNet40 under every ``--svm-protocol`` preset (cv, recon, point-m2ae, crosspoint);
* few-shot 5w10s / 5w20s / 10w10s / 10w20s: on the official folds (``--folds``), mean ± std over
  them, else on seeded episodes drawn from ModelNet40 train / test (said in the table);
* with ``--scanobjectnn``, the SVM on each variant found (cv and point-m2ae, the one official
  ScanObjectNN SVM).

and writes ``OUT/report.md`` (the tables, the pretraining data, epochs and protocol of our rows,
the published rows with their sources), ``OUT/report.csv`` (one row per number) and ``report.json``.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np

from cma_builder.atomic import atomic_write

from ..errors import TrainError
from .features import load_spec
from .fewshot import few_shot
from .svm import linear_svm
from .svm_presets import POOLINGS, PRESETS, fixed_svm, token_features

FEWSHOT = ((5, 10), (5, 20), (10, 10), (10, 20))
SVM_PRESETS = ("cv", "recon", "point-m2ae", "crosspoint")
SONN_PRESETS = ("cv", "point-m2ae")

# Published numbers of the methods this toolkit ships, with where each comes from. Only numbers a
# reader can find in the cited place; see docs/EVALUATION.md for the ones left out and why.
PUBLISHED = [
    {"row": "Point-MAE (published)", "method": "point-mae",
     "svm": 91.0,
     "svm_source": "linear SVM on ModelNet40 as tabled by Point-M2AE (README table, ZrrSkywalker/Point-M2AE @e13024a); "
                   "no released code computes it: Point-MAE's own SVM validation is commented out "
                   "(tools/runner_pretrain.py L184 @336d42f) and Point_MAE.forward ignores noaug and returns the loss "
                   "(models/Point_MAE.py L381-417)",
     "fewshot": {(5, 10): (96.3, 2.5), (5, 20): (97.8, 1.8), (10, 10): (92.6, 4.1), (10, 20): (95.0, 3.0)},
     "fewshot_source": "Point-MAE paper (Pang et al., ECCV 2022), few-shot table: the whole network fine-tuned per "
                       "fold on the official ModelNetFewshot folds (cfgs/fewshot.yaml), mean ± std over 10 folds"},
    {"row": "MM-Point (published)", "method": "mm-point",
     "svm": 92.4,
     "svm_source": "MM-Point paper (the project's seed paper 001): 92.4 % on ModelNet40 after 'pre-training on unlabeled 3D "
                   "datasets followed by linear probing or fine-tuning'; the seed names neither the pretraining "
                   "data nor the classifier's C or sampling",
     "fewshot": {}, "fewshot_source": ""},
]


class _Data:
    """ModelNet40 / ScanObjectNN splits read once, cut per sampling, features cached per encoder."""

    def __init__(self, modelnet40: Path, progress):
        from .readers import modelnet_layout

        self.root, self.progress = Path(modelnet40), progress
        self.layout = modelnet_layout(self.root, 40)
        self._raw: dict = {}
        self._sets: dict = {}

    def modelnet(self, split: str, points: int, sampling: str):
        key = ("mn40", split, points, sampling)
        if key not in self._sets:
            from .modelnet_files import read_raw, sampled
            from .readers import read_modelnet40

            if self.layout == "resampled":
                if split not in self._raw:
                    self._raw[split] = read_raw(self.root, 40, split, self.progress)
                self._sets[key] = sampled(self._raw[split], points, sampling, self.progress)
            else:
                self._sets[key] = read_modelnet40(self.root, split, points, sampling=sampling)
        return self._sets[key]


def _pct(x):
    return None if x is None else round(100 * float(x), 2)


def _svm(enc, preset, benchmark, train, test, seed, device, cache, tag) -> dict:
    def feats(ps, pooling, normalize):
        key = (tag, ps.name, ps.origin, pooling, normalize)
        if key not in cache:   # one encoder pass gives every pooling of these clouds
            for k, v in token_features(enc, ps.points, POOLINGS, normalize, device=device).items():
                cache[(tag, ps.name, ps.origin, k, normalize)] = v
        return cache[key]

    if preset.name == "cv":
        r = linear_svm(feats(train, "max|mean", True), train.labels, feats(test, "max|mean", True), test.labels,
                       seed=seed)
        return {"accuracy": r["test_accuracy"], "C": r["C"], "how": r["val_source"]}
    C, origin = preset.c_for(benchmark)
    r = fixed_svm(feats(train, preset.pooling, preset.normalize), train.labels,
                  feats(test, preset.pooling, preset.normalize), test.labels, preset.classifier, C,
                  preset.standardize, seed)
    return {"accuracy": r["test_accuracy"], "C": C, "how": origin, "converged": r["converged"]}


def run_record(source: Path) -> dict:
    """What the run trained on and for how long: ``RUN/data.json`` and ``RUN/config.yaml`` when RUN is a run
    folder (or a file inside one)."""
    import yaml

    run = source if source.is_dir() else source.parent.parent if source.parent.name == "checkpoints" else None
    out: dict = {"run": str(source)}
    if run is None:
        return out
    try:
        rec = json.loads((run / "data.json").read_text("utf-8")) if (run / "data.json").is_file() else None
        if isinstance(rec, dict) and isinstance(rec.get("description"), str):
            out["data"] = {k: v for k, v in rec.items() if isinstance(v, (str, int, float))}
    except (OSError, ValueError):
        pass
    try:
        cfg = yaml.safe_load((run / "config.yaml").read_text("utf-8")) if (run / "config.yaml").is_file() else None
        if isinstance(cfg, dict) and isinstance(cfg.get("optim"), dict) and isinstance(cfg.get("data"), dict):
            out["config"] = {"method": cfg.get("method"), "epochs": cfg["optim"].get("epochs"),
                             "batch_size": cfg["optim"].get("batch_size"), "num_points": cfg["data"].get("num_points")}
    except (OSError, yaml.YAMLError):
        pass
    return out


def build_report(run, modelnet40, out, scanobjectnn=None, folds=None, which: str = "last", random_init: bool = True,
                 seed: int = 0, device: str | None = None, progress: bool | None = None, log=print) -> dict:
    from .fewshot_folds import available, fold_accuracies, read_folds
    from .readers import read_scanobjectnn

    t0 = time.perf_counter()
    device = device or ("cuda" if __import__("torch").cuda.is_available() else "cpu")
    spec = load_spec(run, which)
    spec.check_points(1024, "the report's 1024-point clouds: ")
    data = _Data(modelnet40, progress)
    fold_sets = available(folds) if folds is not None else {}
    encoders = [("pretrained", spec)] + ([("random init", spec.random_init())] if random_init else [])
    results, cache = [], {}
    folds_read = {(w, k): read_folds(fold_sets[(w, k)], w, k, 1024, "fps", progress)   # read (and checked) first
                  for w, k in FEWSHOT if (w, k) in fold_sets}
    if folds is not None and not folds_read:
        raise TrainError(f"--folds {folds}: none of the settings {', '.join(f'{w}way_{k}shot' for w, k in FEWSHOT)}")
    for split in ("train", "test"):                         # the ModelNet40 files too, before any scoring
        data.modelnet(split, 1024, PRESETS["cv"].sampling[data.layout])
    has_global = getattr(spec.build(seed), "cls_token", None) is not None
    for tag, sp in encoders:
        enc = sp.build(seed)
        row = {"row": f"{sp.method or sp.name} ({'this run' if tag == 'pretrained' else 'random init'})", "kind": tag,
               "svm": {}, "fewshot": {}, "scanobjectnn": {}}
        for name in SVM_PRESETS:
            preset = PRESETS[name]
            sampling = preset.sampling[data.layout]
            train, test = (data.modelnet(s, preset.points, sampling) for s in ("train", "test"))
            row["svm"][name] = {**_svm(enc, preset, "modelnet40", train, test, seed, device, cache, tag),
                                "data": train.origin}
            log(f"{row['row']}: SVM [{name}] {100 * row['svm'][name]['accuracy']:.2f} %")
        for w, k in FEWSHOT:
            if folds is not None:
                if (w, k) not in folds_read:
                    continue
                accs = fold_accuracies(enc, folds_read[(w, k)], device, seed)
                row["fewshot"][f"{w}w{k}s"] = {"mean": float(np.mean(accs)), "std": float(np.std(accs)),
                                               "n": len(accs), "episodes": "official folds"}
            else:
                train, test = (data.modelnet(s, 1024, PRESETS["cv"].sampling[data.layout]) for s in ("train", "test"))
                fx = _cached(cache, (tag, train.name, train.origin, "max|mean", True),
                             lambda: token_features(enc, train.points, device=device))
                fq = _cached(cache, (tag, test.name, test.origin, "max|mean", True),
                             lambda: token_features(enc, test.points, device=device))
                try:
                    r = few_shot(fx, train.labels, fq, test.labels, w, k, trials=10, queries=20, seed=seed)
                except TrainError as e:      # a setting this ModelNet40 cannot supply: said, not fatal
                    row["fewshot_skipped"] = row.get("fewshot_skipped", []) + [str(e)]
                    continue
                row["fewshot"][f"{w}w{k}s"] = {"mean": r["mean"], "std": r["std"], "n": 10,
                                               "episodes": "drawn from ModelNet40 train/test (seeded)"}
        if scanobjectnn is not None:
            for variant in ("obj_bg", "obj_only", "pb_t50_rs"):
                for name in SONN_PRESETS:
                    preset = PRESETS[name]
                    try:
                        train, test = (read_scanobjectnn(scanobjectnn, variant, s, preset.points_for("scanobjectnn"),
                                                         sampling=preset.sampling["h5"]) for s in ("train", "test"))
                    except TrainError as e:
                        if "missing" in str(e):
                            row["scanobjectnn"].setdefault("skipped", []).append(str(e))
                            break
                        raise
                    row["scanobjectnn"][f"{variant}/{name}"] = _svm(enc, preset, "scanobjectnn", train, test, seed,
                                                                   device, cache, tag)
        results.append(row)
    report = {"encoder": spec.source, "method": spec.method, "encoder_name": spec.name, "pretrain_epoch": spec.epoch,
              "record": run_record(Path(run)), "modelnet40": str(modelnet40), "modelnet40_layout": data.layout,
              "folds": None if folds is None else str(folds), "scanobjectnn": None if scanobjectnn is None
              else str(scanobjectnn), "seed": seed, "rows": results, "published": _published(),
              "presets": {n: {"line": PRESETS[n].describe("modelnet40", has_global), "source": PRESETS[n].source,
                              "official_data": PRESETS[n].data} for n in SVM_PRESETS},
              "seconds": round(time.perf_counter() - t0, 1)}
    write_report(report, Path(out))
    return report


def _cached(cache: dict, key, make):
    if key not in cache:
        cache[key] = make()
    return cache[key]


def _published() -> list[dict]:
    return [{**p, "fewshot": {f"{w}w{k}s": v for (w, k), v in p["fewshot"].items()}} for p in PUBLISHED]


def _cell(value, std=None) -> str:
    if value is None:
        return "–"
    return f"{value:.1f}" if std is None else f"{value:.1f} ± {std:.1f}"


def write_report(report: dict, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    rows_csv = []
    head = ["row", *[f"SVM {p}" for p in SVM_PRESETS], "SVM as published", *[f"{w}w{k}s" for w, k in FEWSHOT]]
    lines = [f"# {report['method'] or report['encoder_name']}: ModelNet40 linear SVM and few-shot", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in report["rows"]:
        cells = [r["row"]] + [_cell(_pct(r["svm"][p]["accuracy"])) for p in SVM_PRESETS] + ["–"]
        for w, k in FEWSHOT:
            f = r["fewshot"].get(f"{w}w{k}s")
            cells.append("–" if f is None else _cell(_pct(f["mean"]), _pct(f["std"])))
            if f is not None:
                rows_csv.append({"row": r["row"], "benchmark": "modelnet40", "protocol": f"fewshot {w}w{k}s",
                                 "value": _pct(f["mean"]), "std": _pct(f["std"]), "source": f["episodes"]})
        for p in SVM_PRESETS:
            s = r["svm"][p]
            rows_csv.append({"row": r["row"], "benchmark": "modelnet40", "protocol": f"svm {p}",
                             "value": _pct(s["accuracy"]), "std": None, "source": f"C={s['C']:g} ({s['how']}); {s['data']}"})
        lines.append("| " + " | ".join(cells) + " |")
    for i, p in enumerate(report["published"], 1):
        cells = [p["row"]] + ["–"] * len(SVM_PRESETS) + [_cell(p["svm"]) + f" [{i}a]" if p["svm"] else "–"]
        for w, k in FEWSHOT:
            v = p["fewshot"].get(f"{w}w{k}s")
            cells.append("–" if v is None else _cell(*v) + f" [{i}b]")
            if v is not None:
                rows_csv.append({"row": p["row"], "benchmark": "modelnet40", "protocol": f"fewshot {w}w{k}s",
                                 "value": v[0], "std": v[1], "source": p["fewshot_source"]})
        if p["svm"]:
            rows_csv.append({"row": p["row"], "benchmark": "modelnet40", "protocol": "svm as published",
                             "value": p["svm"], "std": None, "source": p["svm_source"]})
        lines.append("| " + " | ".join(cells) + " |")
    sonn = [r for r in report["rows"] if any(k != "skipped" for k in r["scanobjectnn"])]
    if sonn:
        keys = [k for k in sonn[0]["scanobjectnn"] if k != "skipped"]
        lines += ["", "## ScanObjectNN, linear SVM", "", "| row | " + " | ".join(keys) + " |", "|" + "---|" * (len(keys) + 1)]
        for r in sonn:
            lines.append("| " + r["row"] + " | " + " | ".join(_cell(_pct(r["scanobjectnn"][k]["accuracy"]))
                                                              for k in keys) + " |")
            for k in keys:
                s = r["scanobjectnn"][k]
                rows_csv.append({"row": r["row"], "benchmark": f"scanobjectnn/{k.split('/')[0]}",
                                 "protocol": f"svm {k.split('/')[1]}", "value": _pct(s["accuracy"]), "std": None,
                                 "source": f"C={s['C']:g} ({s['how']})"})
    skipped = report["rows"][0].get("fewshot_skipped") if report["rows"] else None
    if skipped:
        lines += ["", "Few-shot settings this ModelNet40 cannot supply (–): " + "; ".join(skipped) + "."]
    if sonn and sonn[0]["scanobjectnn"].get("skipped"):
        lines += ["", "Variants not found: " + "; ".join(sonn[0]["scanobjectnn"]["skipped"]) + "."]
    rec = report["record"]
    d, c = rec.get("data", {}), rec.get("config", {})
    lines += ["", "## Our rows", "",
              f"- Encoder: `{report['encoder']}` ({report['encoder_name']}, epoch {report['pretrain_epoch']}).",
              f"- Pretraining data: {d.get('description', 'not recorded (an official checkpoint, an export, or a run made before data.json was written)')}.",
              f"- Pretraining: epoch {report['pretrain_epoch']} of {c.get('epochs', '?')} planned, batch "
              f"{c.get('batch_size', '?')}, {c.get('num_points', '?')} points per cloud"
              if c else "- Pretraining schedule: not recorded with this encoder.",
              f"- ModelNet40: `{report['modelnet40']}` ({report['modelnet40_layout']} layout); every cloud 1024 points.",
              "- Few-shot: " + ("the official folds in `" + report["folds"] + "`, mean ± std (numpy, ddof 0) over "
                                "the folds" if report["folds"] else "no --folds given: 10 seeded episodes per "
                                "setting drawn from ModelNet40 train (support) and test (20 queries per class)")
              + "; frozen features ([max ; mean], standardized), linear SVM C = 0.1 per episode, not fine-tuning.",
              "- Random init: the same architecture, untrained (seed " + str(report["seed"]) + "): the baseline every "
              "pretrained number should be read against.", "", "## SVM protocols", ""]
    for n in SVM_PRESETS:
        lines.append(f"- {report['presets'][n]['line']}. Official data: {report['presets'][n]['official_data']}. "
                     f"Source: {report['presets'][n]['source']}.")
    lines += ["", "## Published rows", ""]
    for i, p in enumerate(report["published"], 1):
        if p["svm"]:
            lines.append(f"- [{i}a] {p['row']}, SVM: {p['svm_source']}.")
        if p["fewshot"]:
            lines.append(f"- [{i}b] {p['row']}, few-shot: {p['fewshot_source']}.")
    lines += ["", "Published few-shot numbers fine-tune the whole network per fold; ours are frozen-feature SVMs. "
              "Compare rows measured the same way; the published rows say how each was measured.", ""]
    with atomic_write(out / "report.md") as fh:
        fh.write("\n".join(lines))
    with atomic_write(out / "report.csv", newline="") as fh:
        w = csv.DictWriter(fh, ["row", "benchmark", "protocol", "value", "std", "source"])
        w.writeheader()
        w.writerows(rows_csv)
    with atomic_write(out / "report.json") as fh:
        fh.write(json.dumps(report, indent=1, default=str))
