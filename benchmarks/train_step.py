"""Milliseconds per training step (forward; forward + backward; with the AdamW step) of every method
at its published model size and batch size, on the device at hand, on synthetic inputs of the
method's sample kind (clouds; RGB views and cameras for CrossAlignNet and MM-Point).

Each row also shows the ratios to the baseline measured in the same run: Point-MAE, fp32, eager
(the first method listed).
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
from pcssl_train.methods import METHODS, create_method


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def clouds(batch: int, points: int, device: torch.device) -> torch.Tensor:
    """Points on a unit sphere with a bump: cheap, deterministic, realistic spacing for FPS/kNN."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, points, 3, generator=g)
    x = x / x.norm(dim=-1, keepdim=True) * (1 + 0.2 * torch.rand(batch, points, 1, generator=g))
    return x.to(device)


def make_batch(kind: str, cfg: dict, batch: int, device: torch.device) -> dict[str, torch.Tensor]:
    """Synthetic inputs of a method's sample kind: clouds, and for camera kinds RGB images with a
    camera 2.5 units in front of the object (so the clouds project into the images)."""
    x = {"points": clouds(batch, cfg["data"]["num_points"], device)}
    if kind == "fused":
        return x
    size = cfg["model"].get("image_size", 224)
    views = (cfg["data"].get("views") or 1) if kind == "multiview" else 1
    K = torch.tensor([[size * 0.45, 0.0, size / 2 - 0.5], [0.0, size * 0.45, size / 2 - 0.5], [0.0, 0.0, 1.0]])
    w2c = torch.eye(4)
    w2c[2, 3] = 2.5
    g = torch.Generator().manual_seed(1)
    shape = (batch, views) if kind == "multiview" else (batch,)
    x["rgb"] = torch.rand(*shape, 3, size, size, generator=g).to(device)
    x["K"] = K.expand(*shape, 3, 3).contiguous().to(device)
    x["world_to_cam"] = w2c.expand(*shape, 4, 4).contiguous().to(device)
    return x


def time_steps(method_name: str, batch: int, device, amp: bool, compile_: bool, steps: int,
               warmup: int) -> tuple[float, float, float]:
    cfg = load_config(method_name)
    torch.manual_seed(0)
    method = create_method(method_name, **cfg["model"]).to(device).train()
    model = torch.compile(method) if compile_ else method
    optimizer = torch.optim.AdamW(method.parameters(), lr=1e-4)
    x = make_batch(method.kind, cfg, batch, device)
    fwd, fwd_bwd, full = [], [], []
    for i in range(warmup + steps):
        sync(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = model(x)["loss"]
        sync(device)
        tf = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        sync(device)
        t1 = time.perf_counter()
        optimizer.step()
        sync(device)
        t2 = time.perf_counter()
        if i >= warmup:
            fwd.append(tf - t0)
            fwd_bwd.append(t1 - t0)
            full.append(t2 - t0)
    med = lambda v: sorted(v)[len(v) // 2] * 1000  # noqa: E731
    return med(fwd), med(fwd_bwd), med(full)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=128, help="batch size (published: 128)")
    ap.add_argument("--methods", default=",".join(METHODS))
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
    print(f"{'method':<18}{'variant':<14}{'fwd ms':>10}{'vs base':>9}{'fwd+bwd ms':>12}{'vs base':>9}{'+AdamW ms':>11}")
    base = None
    for method in args.methods.split(","):
        for label, amp, comp in variants:
            f, fb, full = time_steps(method, args.batch, device, amp, comp, args.steps, args.warmup)
            base = base or (f, fb)
            print(f"{method:<18}{label:<14}{f:>10.1f}{f / base[0]:>8.2f}x{fb:>12.1f}{fb / base[1]:>8.2f}x{full:>11.1f}",
                  flush=True)


if __name__ == "__main__":
    main()
