"""Milliseconds per training step (forward + backward, and with the AdamW step) of every method at
its published model size and batch size, on the device at hand.

Each row also shows the ratio to the baseline measured in the same run: Point-MAE, fp32, eager.
On a GPU, ``--bf16`` and ``--compile`` add rows for bf16 autocast and torch.compile.

    python benchmarks/train_step.py                          # CPU or the first GPU, batch 128
    python benchmarks/train_step.py --bf16 --compile         # GPU: fp32, bf16, bf16 + compile
    python benchmarks/train_step.py --batch 16 --steps 3     # quick look on a laptop CPU
"""

from __future__ import annotations

import argparse
import time

import torch

from pcssl_train.engine.config import load_config
from pcssl_train.methods import create_method


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clouds(batch: int, points: int, device: torch.device) -> torch.Tensor:
    """Points on a unit sphere with a bump: cheap, deterministic, realistic spacing for FPS/kNN."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, points, 3, generator=g)
    x = x / x.norm(dim=-1, keepdim=True) * (1 + 0.2 * torch.rand(batch, points, 1, generator=g))
    return x.to(device)


def time_steps(method_name: str, batch: int, device, amp: bool, compile_: bool, steps: int, warmup: int) -> tuple[float, float]:
    cfg = load_config(method_name)
    torch.manual_seed(0)
    method = create_method(method_name, **cfg["model"]).to(device).train()
    model = torch.compile(method) if compile_ else method
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-4)
    x = {"points": clouds(batch, cfg["data"]["num_points"], device)}
    fwd_bwd, full = [], []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(x)["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        t1 = time.perf_counter()
        optimizer.step()
        sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            fwd_bwd.append(t1 - t0)
            full.append(t2 - t0)
    med = lambda v: sorted(v)[len(v) // 2] * 1000  # noqa: E731
    return med(fwd_bwd), med(full)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128, help="batch size (published: 128)")
    ap.add_argument("--methods", default="point-mae,serp-pointnet,serp-transformer,vasp")
    ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    ap.add_argument("--bf16", action="store_true", help="add bf16 autocast rows (GPU)")
    ap.add_argument("--compile", action="store_true", help="add torch.compile rows (GPU, with --bf16)")
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    args = ap.parse_args()
    device = torch.device("cuda" if args.device in ("auto", "cuda") and torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {name}; torch {torch.__version__}; batch {args.batch}; median of {args.steps} steps "
          f"after {args.warmup} warm-up")
    variants = [("fp32", False, False)]
    if args.bf16 and device.type == "cuda":
        variants.append(("bf16", True, False))
        if args.compile:
            variants.append(("bf16+compile", True, True))
    print(f"{'method':<18}{'variant':<14}{'fwd+bwd ms':>12}{'+AdamW ms':>12}{'vs baseline':>13}")
    baseline = None
    for method in args.methods.split(","):
        for label, amp, comp in variants:
            fb, full = time_steps(method, args.batch, device, amp, comp, args.steps, args.warmup)
            baseline = baseline or fb
            print(f"{method:<18}{label:<14}{fb:>12.1f}{full:>12.1f}{fb / baseline:>12.2f}x", flush=True)


if __name__ == "__main__":
    main()
