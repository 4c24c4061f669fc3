"""Short pretraining of every method on a rendered dataset: throughput, peak memory, eval reached.

For each method: ``pcssl-train pretrain`` (its own process) with its published config (or ``--tiny``) for
``--epochs`` epochs on the train split, then the linear SVM of ``pcssl-train eval -p svm -b cma``
(fused clouds, category labels, C chosen on the val split) for the pretrained encoder and for the
same encoder at random init. Samples/s is the median over the epochs after the first (from the
run's throughput.json); the ratio is to the first method measured in the same run (Point-MAE by
default). Memory is torch.cuda.max_memory_allocated on a GPU, the process peak RSS on a CPU.
Finished runs in OUT are reused (a second call only re-scores).

    python benchmarks/pretrain_throughput.py --data shapenet-cma --out out/pretrain-gpu --epochs 3
    python benchmarks/pretrain_throughput.py --data out/benchmark/dataset --tiny --epochs 2  # CPU check
    python benchmarks/pretrain_throughput.py --data ds --methods point-mae,vasp --set train.compile=true
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import time
from pathlib import Path

import torch

from pcssl_train.methods import METHODS
from pcssl_train.eval.features import load_spec
from pcssl_train.eval.protocols import run_protocol


def measure(method: str, args) -> dict:
    run = args.out / "runs" / method
    sets = ("data.split=train", f"optim.epochs={args.epochs}", "train.tensorboard=false", "train.keep_every=0",
            *(f"optim.batch_size={args.batch_size}",) * bool(args.batch_size), *args.set)
    cmd = [str(Path(sys.executable).with_name("pcssl-train")), "pretrain", "-m", method, "-d", str(args.data),
           "-o", str(run), "--device", args.device or "auto", "--no-progress"]
    if args.tiny:
        cmd += ["-c", f"{method}-tiny"]
    for s in sets:
        cmd += ["--set", s]
    t0 = time.perf_counter()
    if subprocess.run(cmd).returncode:  # its own process: peak memory is this method's alone
        raise SystemExit(f"{method}: pretraining failed: {shlex.join(cmd)}")
    seconds = time.perf_counter() - t0
    speed = json.loads((run / "throughput.json").read_text())
    svm = {}
    for init in (False, True):
        r = run_protocol(run, "svm", "cma", args.data, random_init=init, device=args.device, progress=False)
        svm["random" if init else "pretrained"] = r["test_accuracy"]
    spec = load_spec(run)
    return {"method": method, "encoder": spec.name, "params": sum(p.numel() for p in spec.build(0).parameters()),
            "epochs": args.epochs, "call_seconds": round(seconds, 1), **speed,
            "svm_pretrained": svm["pretrained"], "svm_random_init": svm["random"]}


def markdown(rows: list[dict], command: str) -> str:
    base = rows[0]["samples_per_s"]
    lines = [f"`{command}`", "", f"torch {torch.__version__}; device {rows[0]['device']}; "
             f"{rows[0]['amp']}, compile {rows[0]['compile']}.", "",
             "| method | encoder | global batch | samples/s | vs first | peak memory MB | epochs | SVM pretrained "
             "| SVM random init |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['method']} | {r['encoder']} ({r['params'] / 1e6:.2f}M) | {r['global_batch']} | "
                     f"{r['samples_per_s']:.1f} | {r['samples_per_s'] / base:.2f}x | {r['peak_memory_mb']:.0f} | "
                     f"{r['epochs']} | {100 * r['svm_pretrained']:.1f} | {100 * r['svm_random_init']:.1f} |")
    lines += ["", "SVM: linear SVM test accuracy in % on the dataset's fused clouds (pcssl-train eval -p svm -b cma)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="a cma-build dataset with train/val/test objects")
    ap.add_argument("--out", type=Path, default=Path("out/pretrain-throughput"))
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--batch-size", type=int, help="override optim.batch_size (default: the config's)")
    ap.add_argument("--tiny", action="store_true", help="the CPU-sized <method>-tiny configs")
    ap.add_argument("--set", action="append", default=[], help="extra config override KEY=VALUE (repeatable)")
    ap.add_argument("--device", choices=["cpu", "cuda"], help="default: cuda when available")
    ap.add_argument("--no-progress", action="store_true")
    args = ap.parse_args()
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown method {bad[0]}: expected some of {', '.join(METHODS)}")
    if args.epochs < 2:
        raise SystemExit("--epochs must be at least 2 (the first epoch is left out of samples/s)")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/pretrain_throughput.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    rows = []
    for method in methods:
        rows.append(measure(method, args))
        r = rows[-1]
        print(f"{method}: {r['samples_per_s']:.1f} samples/s, peak {r['peak_memory_mb']:.0f} MB, SVM "
              f"{100 * r['svm_pretrained']:.1f} pretrained vs {100 * r['svm_random_init']:.1f} random init",
              file=sys.stderr)
        (args.out / "results.json").write_text(json.dumps({"command": command, "results": rows}, indent=1))
        (args.out / "results.md").write_text(markdown(rows, command))
    print(markdown(rows, command))


if __name__ == "__main__":
    main()
