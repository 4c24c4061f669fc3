"""One-GPU check of the CUDA code paths, in at most --budget seconds (default 450, under 8 minutes):

  ops       every pcssl_train.ops op on CUDA against its naive reference (ops/reference.py) and
            against the same op on the CPU; with pytorch3d installed, both its dispatch and the
            pure-PyTorch path (PCSSL_NO_PYTORCH3D=1); gradients of Chamfer and kNN distances too.
  step      ms per fwd+bwd (and fwd, +AdamW) at batch 128 in bf16 autocast of all six methods at
            their published sizes (benchmarks/train_step.py's synthetic batches), ratio to Point-MAE.
  render    `cma-build render --device gpu` views/s against `--device cpu` on 8 synthesized
            mini-ShapeNet objects (same settings, same worker count), ratio GPU / CPU.
  pretrain  a short real-size pretraining run of every method on that rendered dataset: the
            trainer's step (bf16 autocast, AdamW, the config's grad clip) at batch 128 drawn with replacement
            from the 8 objects through CmaDataset + DataLoader; samples/s, ratio to Point-MAE.

Each part runs in its own process with its own time box (a hung or crashed CUDA context cannot
stop the others); a part that fails or runs out of time records its error and partial results.
Writes OUT/results.json and OUT/results.md. Without a CUDA GPU it prints one line and exits 0.

Example:
    python benchmarks/gpu_check.py                                 # everything, out/gpu_check
    python benchmarks/gpu_check.py --parts ops,step --out out/gpu-ops
    python benchmarks/gpu_check.py --budget 300 --render-workers 4 --pretrain-steps 4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

from pcssl_train.methods import METHODS

HERE = Path(__file__).resolve().parent
# part -> (seconds it may take at most, a short title); the budget is shared in this order
PARTS = {"ops": (60, "CUDA ops against the references"),
         "step": (120, "fwd+bwd ms at batch 128, bf16"),
         "render": (170, "cma-build render --device gpu vs cpu"),
         "pretrain": (110, "real-size pretraining throughput")}


def run_boxed(cmd: list[str], timeout: float) -> subprocess.CompletedProcess:
    """``subprocess.run`` in a new process group that is killed whole on timeout (Blender workers and
    DataLoader workers included, so nothing is left holding the GPU)."""
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                          start_new_session=True) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            raise
        return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def reset_memory(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak_memory_mb(device) -> int:
    import torch

    return round(torch.cuda.max_memory_allocated(device) / 2 ** 20) if device.type == "cuda" else 0


# --- part: ops ---------------------------------------------------------------------------------
def part_ops(args, record) -> None:
    import torch

    from pcssl_train import ops
    from pcssl_train.ops import reference as ref
    from pcssl_train.ops.knn import knn_graph

    dev = torch.device(args.device)

    def cloud(*shape, seed=0, dtype=torch.float32):
        g = torch.Generator().manual_seed(seed)
        return torch.randn(*shape, generator=g, dtype=torch.float64).to(dtype)

    def close(a, b, tol):
        err = float((a.detach().double().cpu() - b.detach().double().cpu()).abs().max()) if a.numel() else 0.0
        return err <= tol, err

    def check(name, fn):
        t0 = time.perf_counter()
        try:
            ok, detail = fn()
        except Exception as e:  # noqa: BLE001 - recorded, the other checks go on
            ok, detail = False, f"{type(e).__name__}: {e}"
        record({"check": name, "path": path, "ok": bool(ok), "detail": detail,
                "seconds": round(time.perf_counter() - t0, 3)})

    def fps_ref():
        x = cloud(2, 256, 3, seed=1)
        got = ops.farthest_point_sample(x.to(dev), 32)
        want = ref.farthest_point_sample_ref(x, 32)
        cpu = ops.farthest_point_sample(x, 32)
        return torch.equal(got.cpu(), want) and torch.equal(got.cpu(), cpu), \
            f"index mismatches vs reference {int((got.cpu() != want).sum())}, vs cpu {int((got.cpu() != cpu).sum())}"

    def fps_large_bf16():
        x = cloud(4, 8192, 3, seed=2)
        got = ops.farthest_point_sample(x.to(dev), 1024)
        cpu = ops.farthest_point_sample(x, 1024)
        low = ops.farthest_point_sample(x.to(dev).bfloat16(), 64)
        want_low = ops.farthest_point_sample(x.bfloat16().float(), 64)
        return torch.equal(got.cpu(), cpu) and torch.equal(low.cpu(), want_low), \
            f"4x8192 -> 1024 mismatches vs cpu {int((got.cpu() != cpu).sum())}; bf16 input == its float32 values: " \
            f"{torch.equal(low.cpu(), want_low)}"

    def knn_ref():
        q, p = cloud(2, 64, 3, seed=3), cloud(2, 200, 3, seed=4)
        d, i = ops.knn(q.to(dev), p.to(dev), 16)
        dr, ir = ref.knn_ref(q, p, 16)
        dc, ic = ops.knn(q, p, 16)
        ok_d, err = close(d, dr, 1e-5)
        return ok_d and torch.equal(i.cpu(), ir) and torch.equal(i.cpu(), ic), \
            f"max dist2 error {err:.2e}; idx == ref {torch.equal(i.cpu(), ir)}, == cpu {torch.equal(i.cpu(), ic)}"

    def knn_features_grad():
        q, p = cloud(2, 128, 64, seed=5), cloud(2, 512, 64, seed=6)
        out = []
        for d in (dev, torch.device("cpu")):
            qq, pp = q.clone().to(d).requires_grad_(), p.clone().to(d).requires_grad_()
            dist, idx = ops.knn(qq, pp, 20)
            dist.sum().backward()
            out.append((dist, idx, qq.grad, pp.grad))
        (d1, i1, gq1, gp1), (d2, i2, gq2, gp2) = out
        ok = [close(d1, d2, 1e-3), close(gq1, gq2, 1e-3), close(gp1, gp2, 1e-3)]
        return all(o for o, _ in ok) and torch.equal(i1.cpu(), i2), \
            f"64-d features: max err dist {ok[0][1]:.1e}, grad q {ok[1][1]:.1e}, grad p {ok[2][1]:.1e}; " \
            f"idx == cpu {torch.equal(i1.cpu(), i2)}"

    def knn_graph_cpu():
        x = cloud(4, 1024, 64, seed=7)
        got, cpu = knn_graph(x.to(dev), 20).cpu(), knn_graph(x, 20)
        same = float((got.sort(-1).values == cpu.sort(-1).values).float().mean())
        return same > 0.999, f"neighbour sets equal to cpu: {same:.5f} (matmul rounding may swap near-ties)"

    def chamfer_ref():
        x, y = cloud(3, 100, 3, seed=8), cloud(3, 80, 3, seed=9)
        msgs, ok = [], True
        for norm in (1, 2):
            got = ops.chamfer_distance(x.to(dev), y.to(dev), norm=norm, reduction="none")
            want = ref.chamfer_distance_ref(x, y, norm=norm)
            o, err = close(got, want, 1e-5)
            ok &= o
            msgs.append(f"L{norm} max err {err:.1e}")
        xs, ys = [t.detach().clone().to(dev).requires_grad_() for t in (x, y)]
        ops.chamfer_distance(xs, ys, norm=1).backward()
        xc, yc = [t.detach().clone().requires_grad_() for t in (x, y)]
        ops.chamfer_distance(xc, yc, norm=1).backward()
        o1, e1 = close(xs.grad, xc.grad, 1e-5)
        o2, e2 = close(ys.grad, yc.grad, 1e-5)
        return ok and o1 and o2, "; ".join(msgs) + f"; L1 grads vs cpu {max(e1, e2):.1e}"

    def group_ref():
        x = cloud(2, 256, 3, seed=10)
        got = ops.group_patches(x.to(dev), 16, 16)
        center, neigh, idx = ref.group_patches_ref(x, 16, 16)
        o1, e1 = close(got.center, center, 1e-6)
        o2, e2 = close(got.neighborhood, neigh, 1e-5)
        return o1 and o2 and torch.equal(got.idx.cpu(), idx), \
            f"center err {e1:.1e}, neighborhood err {e2:.1e}, idx == ref {torch.equal(got.idx.cpu(), idx)}"

    def gather_normalize():
        x = cloud(4, 512, 3, seed=11)
        idx = torch.randint(0, 512, (4, 32, 8), generator=torch.Generator().manual_seed(0))
        got = ops.gather_points(x.to(dev), idx.to(dev))
        want = torch.stack([x[b][idx[b]] for b in range(4)])
        n_got = ops.normalize_patches(got)
        n_want = want / (want.reshape(4, 32, -1).std(-1)[..., None, None] + 1e-6)
        o1, e1 = close(got, want, 0.0)
        o2, e2 = close(n_got, n_want, 1e-5)
        return o1 and o2, f"gather exact: {o1}; normalize_patches err {e2:.1e}"

    checks = [("farthest_point_sample vs reference and cpu", fps_ref),
              ("farthest_point_sample 4x8192->1024 vs cpu, bf16 input", fps_large_bf16),
              ("knn vs reference and cpu", knn_ref),
              ("knn 64-d features + gradients vs cpu", knn_features_grad),
              ("knn_graph vs cpu", knn_graph_cpu),
              ("chamfer_distance L1/L2 vs reference, L1 gradients vs cpu", chamfer_ref),
              ("group_patches vs reference", group_ref),
              ("gather_points, normalize_patches", gather_normalize)]
    paths = ["pytorch3d", "pure-pytorch"] if ops.HAS_PYTORCH3D else ["pure-pytorch"]
    for path in paths:
        os.environ["PCSSL_NO_PYTORCH3D"] = "1" if path == "pure-pytorch" else "0"
        for name, fn in checks:
            check(name, fn)
        sync(dev)


# --- part: step --------------------------------------------------------------------------------
def part_step(args, record) -> None:
    import torch

    sys.path.insert(0, str(HERE))
    from train_step import time_steps

    device = torch.device(args.device)
    for method in args.methods:
        reset_memory(device)
        variants = [("bf16", False)] + ([("bf16+compile", True)] if args.compile else [])
        for label, comp in variants:
            t0 = time.perf_counter()
            try:
                fwd, fwd_bwd, full = time_steps(method, args.batch, device, True, comp, args.steps, args.warmup)
            except Exception as e:  # noqa: BLE001 - recorded, the next method goes on
                record({"method": method, "variant": label, "error": f"{type(e).__name__}: {e}"[:1000]})
                continue
            record({"method": method, "variant": label, "batch": args.batch, "fwd_ms": round(fwd, 2),
                    "fwd_bwd_ms": round(fwd_bwd, 2), "step_ms": round(full, 2),
                    "peak_memory_mb": peak_memory_mb(device), "seconds": round(time.perf_counter() - t0, 1)})


# --- part: render ------------------------------------------------------------------------------
def part_render(args, record) -> None:
    sys.path.insert(0, str(HERE))
    from _common import source_tree

    work = args.out / "render"
    tree = source_tree(None, work, -(-args.objects // 8))                  # the synthesized mini-ShapeNet
    cma = Path(sys.executable).with_name("cma-build")
    box = args.part_seconds
    for i, device in enumerate(("gpu", "cpu")):                            # GPU first: it is the point
        out = work / f"ds-{device}"
        cmd = [str(cma), "render", "--shapenet", str(tree), "--out", str(out), "--limit", str(args.objects),
               "--resolution", str(args.resolution), "--views", str(args.views), "--samples", str(args.samples),
               "--workers", str(args.render_workers), "--device", device, "--force"]
        left = box - (time.perf_counter() - args.part_start) - 5
        timeout = left if i == 1 else min(left * 0.55, left - 20)
        t0 = time.perf_counter()
        row = {"device": device, "objects": args.objects, "views": args.views, "resolution": args.resolution,
               "samples": args.samples, "workers": args.render_workers, "command": shlex.join(cmd)}
        try:
            proc = run_boxed(cmd, max(5.0, timeout))
        except subprocess.TimeoutExpired:
            record({**row, "error": f"timed out after {timeout:.0f} s"})
            continue
        wall = time.perf_counter() - t0
        m = re.search(r"(\d+) rendered, (\d+) failed", proc.stdout)
        done = int(m.group(1)) if m else 0
        row.update(wall_s=round(wall, 2), rendered=done, failed=int(m.group(2)) if m else None,
                   views_per_s=round(done * args.views / wall, 2), dataset=str(out))
        if proc.returncode or not done:
            row["error"] = f"exit {proc.returncode}: " + (proc.stderr.strip() or proc.stdout.strip())[-800:]
        dev_line = [ln for ln in proc.stdout.splitlines() if "device" in ln.lower()]
        if dev_line:
            row["device_line"] = dev_line[-1].strip()[:300]
        record(row)


# --- part: pretrain ----------------------------------------------------------------------------
def part_pretrain(args, record) -> None:
    import torch

    renders = args.out / "parts" / "render.json"
    rows = json.loads(renders.read_text()) if renders.is_file() else []
    data = next((Path(r["dataset"]) for r in rows if r.get("rendered") and "error" not in r), None)  # GPU's first
    if data is None:
        raise RuntimeError("no rendered dataset (the render part failed or did not run)")
    device = torch.device(args.device)
    for method_name in args.methods:
        left = args.part_seconds - (time.perf_counter() - args.part_start)
        if left < 15:
            record({"method": method_name, "error": f"skipped: {left:.0f} s left in the part's time box"})
            continue
        try:
            pretrain_one(method_name, data, device, args, record)
        except Exception as e:  # noqa: BLE001 - recorded, the next method goes on
            record({"method": method_name, "error": f"{type(e).__name__}: {e}"[:1000]})
        reset_memory(device)


def pretrain_one(method_name: str, data: Path, device, args, record) -> None:
    import torch
    from torch.utils.data import DataLoader, RandomSampler

    from pcssl_train.engine.config import load_config
    from pcssl_train.engine.trainer import build_dataset, param_groups
    from pcssl_train.methods import create_method

    cfg = load_config(method_name, None, ("data.split=all",))
    torch.manual_seed(cfg["train"]["seed"])
    method = create_method(method_name, **cfg["model"]).to(device).train()
    dataset = build_dataset(cfg, data, method.kind)
    steps = args.pretrain_warmup + args.pretrain_steps
    sampler = RandomSampler(dataset, replacement=True, num_samples=steps * args.batch)
    loader = DataLoader(dataset, batch_size=args.batch, sampler=sampler, drop_last=True,
                        num_workers=min(cfg["data"]["workers"], os.cpu_count() or 1),
                        pin_memory=device.type == "cuda")
    o = cfg["optim"]
    optimizer = torch.optim.AdamW(param_groups(method, o["weight_decay"]), lr=o["lr"], betas=tuple(o["betas"]))
    reset_memory(device)
    t0, losses, timed_start = time.perf_counter(), [], None
    for i, batch in enumerate(loader):
        if i == args.pretrain_warmup:
            sync(device)
            timed_start = time.perf_counter()
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        with torch.autocast(device.type, dtype=torch.bfloat16):
            loss = method(batch)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if o["grad_clip"]:
            torch.nn.utils.clip_grad_norm_(method.parameters(), o["grad_clip"])
        optimizer.step()
        losses.append(float(loss.detach()))
    sync(device)
    timed = time.perf_counter() - timed_start
    record({"method": method_name, "batch": args.batch, "steps_timed": args.pretrain_steps,
            "samples_per_s": round(args.pretrain_steps * args.batch / timed, 1),
            "peak_memory_mb": peak_memory_mb(device), "loss_first": round(losses[0], 5),
            "loss_last": round(losses[-1], 5), "finite": all(math.isfinite(v) for v in losses),
            "seconds": round(time.perf_counter() - t0, 1), "dataset": str(data)})


PART_FUNCS = {"ops": part_ops, "step": part_step, "render": part_render, "pretrain": part_pretrain}


# --- driver ------------------------------------------------------------------------------------
def run_part_child(args) -> None:
    """In the child process: run one part, appending each result to OUT/parts/<part>.json as it comes."""
    path = args.out / "parts" / f"{args.part}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []

    def record(row: dict) -> None:
        rows.append(row)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1))
        os.replace(tmp, path)

    args.part_start = time.perf_counter()
    record_error = None
    try:
        PART_FUNCS[args.part](args, record)
    except Exception:  # noqa: BLE001 - the parent records it
        record_error = traceback.format_exc()
    if record_error:
        print(record_error, file=sys.stderr)
        raise SystemExit(1)


def child_argv(args, part: str, seconds: float) -> list[str]:
    argv = [sys.executable, str(Path(__file__).resolve()), "--out", str(args.out), "--_part", part,
            "--_part-seconds", f"{seconds:.0f}", "--methods", ",".join(args.methods), "--batch", str(args.batch),
            "--steps", str(args.steps), "--warmup", str(args.warmup), "--objects", str(args.objects),
            "--resolution", str(args.resolution), "--views", str(args.views), "--samples", str(args.samples),
            "--render-workers", str(args.render_workers), "--pretrain-steps", str(args.pretrain_steps),
            "--pretrain-warmup", str(args.pretrain_warmup), "--_device", args.device]
    return argv + (["--compile"] if args.compile else [])


def ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}x" if base else "n/a"


def summarize(part: str, rows: list[dict]) -> list[str]:
    """Markdown lines for one part, with the ratios against the part's baseline."""
    ok = [r for r in rows if "error" not in r]
    if part == "ops":
        lines = ["| check | path | ok | detail |", "|---|---|---|---|"]
        lines += [f"| {r['check']} | {r['path']} | {'yes' if r['ok'] else '**NO**'} | {r['detail']} |" for r in rows]
        return lines
    if part == "step":
        base = next((r["fwd_bwd_ms"] for r in ok if r["method"] == "point-mae" and r["variant"] == "bf16"), None)
        lines = ["| method | variant | fwd ms | fwd+bwd ms | vs Point-MAE | +AdamW ms | peak MB |", "|---|---|---|---|---|---|---|"]
        for r in ok:
            lines.append(f"| {r['method']} | {r['variant']} | {r['fwd_ms']:.1f} | {r['fwd_bwd_ms']:.1f} | "
                         f"{ratio(r['fwd_bwd_ms'], base)} | "
                         f"{r['step_ms']:.1f} | {r['peak_memory_mb']} |")
        return lines
    if part == "render":
        cpu = next((r["views_per_s"] for r in ok if r["device"] == "cpu" and r.get("rendered")), None)
        lines = ["| device | objects | views | px | samples | workers | wall s | views/s | vs CPU |",
                 "|---|---|---|---|---|---|---|---|---|"]
        for r in ok:
            lines.append(f"| {r['device']} | {r['rendered']}/{r['objects']} | {r['views']} | {r['resolution']} | "
                         f"{r['samples']} | {r['workers']} | {r['wall_s']:.1f} | {r['views_per_s']:.2f} | "
                         f"{ratio(r['views_per_s'], cpu)} |")
        return lines
    base = next((r["samples_per_s"] for r in ok if r["method"] == "point-mae"), None)
    lines = ["| method | batch | samples/s | vs Point-MAE | peak MB | loss first -> last |", "|---|---|---|---|---|---|"]
    for r in ok:
        lines.append(f"| {r['method']} | {r['batch']} | {r['samples_per_s']:.1f} | {ratio(r['samples_per_s'], base)} | "
                     f"{r['peak_memory_mb']} | "
                     f"{r['loss_first']:.4g} -> {r['loss_last']:.4g} |")
    return lines


def write_report(args, command: str, env: dict, parts: dict) -> None:
    (args.out / "results.json").write_text(json.dumps({"command": command, "environment": env, "parts": parts},
                                                      indent=1))
    lines = ["# GPU check", "", f"`{command}`", "",
             f"{env['gpu']}; torch {env['torch']} (CUDA {env['cuda']}); pytorch3d: {env['pytorch3d']}; "
             f"{env['seconds']:.0f} s of a {args.budget} s budget.", ""]
    for part, info in parts.items():
        lines += [f"## {part}: {PARTS[part][1]}", "",
                  f"status **{info['status']}**, {info['seconds']:.0f} s of its {info['time_box_s']:.0f} s box", ""]
        if info.get("error"):
            lines += ["```", info["error"][-1500:], "```", ""]
        errors = [r for r in info["results"] if "error" in r]
        if info["results"]:
            lines += summarize(part, info["results"]) + [""]
        for r in errors:
            lines.append(f"- {r.get('method') or r.get('device')}: {r['error']}")
        lines.append("")
    (args.out / "results.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("out/gpu_check"), help="results.json and results.md go here")
    ap.add_argument("--parts", default=",".join(PARTS), help=f"some of {','.join(PARTS)} (run in this order)")
    ap.add_argument("--budget", type=float, default=450.0, help="seconds for all parts together (default 450)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--batch", type=int, default=128, help="batch of the step and pretrain parts (published: 128)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per method in the step part")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--compile", action="store_true", help="step part: add bf16 + torch.compile rows (minutes)")
    ap.add_argument("--objects", type=int, default=8, help="render part: mini-ShapeNet objects")
    ap.add_argument("--resolution", type=int, default=224)
    ap.add_argument("--views", type=int, default=12)
    ap.add_argument("--samples", type=int, default=32)
    ap.add_argument("--render-workers", type=int, default=max(1, min(8, (os.cpu_count() or 2) // 2)))
    ap.add_argument("--pretrain-steps", type=int, default=5, help="timed steps per method in the pretrain part")
    ap.add_argument("--pretrain-warmup", type=int, default=2)
    ap.add_argument("--_part", help=argparse.SUPPRESS)
    ap.add_argument("--_device", dest="device", default="cuda", help=argparse.SUPPRESS)  # cpu: check the logic here
    ap.add_argument("--_part-seconds", dest="part_seconds", type=float, default=60.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    args.part = args._part
    if args.part:
        return run_part_child(args)

    import torch

    if not torch.cuda.is_available():
        print(f"gpu_check: no CUDA GPU visible to torch {torch.__version__} (torch.cuda.is_available() is False); "
              f"nothing to check")
        return
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    bad = [p for p in parts if p not in PARTS] + [m for m in args.methods if m not in METHODS]
    if bad:
        raise SystemExit(f"unknown part or method {bad[0]!r}: parts {', '.join(PARTS)}; methods {', '.join(METHODS)}")
    args.out.mkdir(parents=True, exist_ok=True)
    command = "python benchmarks/gpu_check.py " + shlex.join(sys.argv[1:])
    try:
        from pcssl_train.ops import HAS_PYTORCH3D
    except Exception:  # noqa: BLE001
        HAS_PYTORCH3D = False
    env = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__, "cuda": torch.version.cuda,
           "pytorch3d": HAS_PYTORCH3D, "cpus": os.cpu_count()}
    start = time.perf_counter()
    deadline = start + args.budget
    results: dict = {}
    wanted_total = sum(PARTS[p][0] for p in parts)
    for i, part in enumerate(parts):
        left = deadline - time.perf_counter()
        later = sum(PARTS[p][0] for p in parts[i + 1:])
        # all that is left but the shares (boxes scaled to the budget) of the parts after it
        box = max(0.0, left - later * args.budget / wanted_total)
        info = {"status": "ok", "time_box_s": round(box), "seconds": 0.0, "results": []}
        results[part] = info
        if box < 10:
            info.update(status="skipped", error=f"only {box:.0f} s left of the {args.budget:.0f} s budget")
            continue
        t0 = time.perf_counter()
        print(f"gpu_check: {part} ({PARTS[part][1]}), up to {box:.0f} s", file=sys.stderr, flush=True)
        try:
            proc = run_boxed(child_argv(args, part, box), box)
            if proc.returncode:
                info.update(status="error", error=(proc.stderr.strip() or f"exit {proc.returncode}")[-4000:])
        except subprocess.TimeoutExpired:
            info.update(status="timeout", error=f"stopped after its {box:.0f} s time box; results so far kept")
        info["seconds"] = round(time.perf_counter() - t0, 1)
        path = args.out / "parts" / f"{part}.json"
        if path.is_file():
            info["results"] = json.loads(path.read_text())
        if any("error" in r or r.get("ok") is False for r in info["results"]) and info["status"] == "ok":
            info["status"] = "failures"
        env["seconds"] = time.perf_counter() - start
        write_report(args, command, env, results)
    env["seconds"] = time.perf_counter() - start
    write_report(args, command, env, results)
    print((args.out / "results.md").read_text())
    print(f"wrote {args.out / 'results.json'} and {args.out / 'results.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
