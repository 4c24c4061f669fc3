"""The GPU code paths, run without a GPU: one training step of every method (forward, loss, backward,
AdamW step, as engine/trainer.py does it) under bf16 autocast on the CPU and under torch.compile
(inductor, CPU), each compared with the plain fp32 eager step on the same weights, batch and
random draws; and benchmarks/gpu_check.py's one-line answer on a machine without a GPU.

Batches are tiny and synthetic (benchmarks/train_step.py's ``make_batch``: clouds, and for the
camera kinds RGB views with a camera in front of the object); models are the ``<method>-tiny``
configs."""

from __future__ import annotations

import copy
import importlib.util
import math
import shutil
import subprocess
import sys

import pytest
import torch

from conftest import REPO
from pcssl_train.engine.config import load_config
from pcssl_train.engine.trainer import param_groups
from pcssl_train.methods import METHODS, create_method

METHOD_NAMES = sorted(METHODS)
BATCH = 4


def _train_step_module():
    spec = importlib.util.spec_from_file_location("train_step_bench", REPO / "benchmarks" / "train_step.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_batch = _train_step_module().make_batch   # one definition of the synthetic batches (GPU benchmark too)


def tiny(name: str):
    """(method at its tiny size with fixed initial weights, its config, a synthetic batch)."""
    cfg = load_config(name, f"{name}-tiny")
    torch.manual_seed(0)
    method = create_method(name, **cfg["model"]).train()
    return method, cfg, make_batch(method.kind, cfg, BATCH, torch.device("cpu"))


def train_step(model, method, batch, amp: bool = False, seed: int = 1):
    """One step exactly as Trainer.fit does it (the methods draw random masks / perturbations: the
    torch RNG is seeded first, so two calls draw the same). Returns (loss, {name: grad}, {name: new value})."""
    optimizer = torch.optim.AdamW(param_groups(method, 0.05), lr=1e-3, betas=(0.9, 0.999))
    torch.manual_seed(seed)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
        out = model(batch)
    loss = out["loss"]
    assert torch.isfinite(loss), f"loss {float(loss)}"
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grads = {n: None if p.grad is None else p.grad.detach().clone() for n, p in method.named_parameters()}
    optimizer.step()
    return loss.detach(), grads, {n: p.detach().clone() for n, p in method.named_parameters()}


def touched(grads: dict) -> set[str]:
    return {n for n, g in grads.items() if g is not None and bool(g.abs().sum() > 0)}


def flat(grads: dict, names) -> torch.Tensor:
    return torch.cat([grads[n].float().flatten() for n in sorted(names)])


# --- bf16 autocast ---------------------------------------------------------------------------
# bf16 keeps 8 significant bits: every matmul/conv input is rounded by up to 2^-9 (0.2 %) of itself.
# A tiny model chains 10-25 such roundings (tokenizer convs, blocks, BatchNorm over a batch of 4,
# heads), which compound to ~1 % in the loss (measured, 2 seeds: SeRP-PointNet 0.6-2.1 %, MM-Point
# 0.2-0.7 %, the transformer methods < 0.25 %); LOSS_RTOL = 5 % leaves room for other seeds while an
# fp32 term computed in bf16 by mistake, a wrong cast or a dropped term (a loss off by a factor)
# still fails.
LOSS_RTOL = 0.05
# Gradients: the bf16 step must point the way the fp32 step does, at the same length. Measured
# cosines between the whole fp32 and bf16 gradient vectors (2 seeds): the transformer methods
# (Point-MAE, SeRP-Transformer, VASP, CrossAlignNet) 0.998-1.000; SeRP-PointNet 0.895-0.909 (max
# pooling over 1024 channels picks other points when features move by a rounding); MM-Point
# 0.52-0.73: DGCNN rebuilds its kNN graph from each layer's (now bf16) features and max-pools over
# the neighbours, so bf16 rounding changes which neighbours and which maxima carry the gradient.
# (Rounding only the fp32 weights to bf16 already gives 0.91 / 0.97 for these two.) A sign error,
# a dropped loss term or a wrong cast gives a cosine near 0 or a length off by a factor.
GRAD_COSINE = {"mm-point": 0.3, "serp-pointnet": 0.7}
GRAD_COSINE_DEFAULT = 0.98
GRAD_NORM_RATIO = (0.8, 1.25)       # measured 0.94-1.01


@pytest.mark.parametrize("name", METHOD_NAMES)
def test_bf16_autocast_training_step(name):
    method, _, batch = tiny(name)
    fp32_method, bf16_method = copy.deepcopy(method), copy.deepcopy(method)
    before = {n: p.detach().clone() for n, p in method.named_parameters()}

    lowered = []                                      # the autocast really runs the layers in bf16
    hooks = [m.register_forward_hook(lambda mod, a, out: lowered.append(out.dtype))
             for m in bf16_method.modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d))]
    loss16, grads16, after16 = train_step(bf16_method, bf16_method, batch, amp=True)
    for h in hooks:
        h.remove()
    loss32, grads32, after32 = train_step(fp32_method, fp32_method, batch, amp=False)

    assert lowered and all(dtype == torch.bfloat16 for dtype in lowered), set(lowered)
    assert loss16.dtype == loss32.dtype == torch.float32           # the losses reduce in float32
    assert math.isfinite(float(loss16))
    assert float(loss16) == pytest.approx(float(loss32), rel=LOSS_RTOL), (float(loss16), float(loss32))

    # every parameter the fp32 step trains gets a finite, float32 gradient under bf16 too
    trained = touched(grads32)
    assert trained, "the fp32 step trained nothing"
    assert trained <= touched(grads16), sorted(trained - touched(grads16))
    for n in trained:
        assert grads16[n].dtype == torch.float32 and torch.isfinite(grads16[n]).all(), n
    cosine = torch.nn.functional.cosine_similarity(flat(grads16, trained), flat(grads32, trained), dim=0)
    assert float(cosine) > GRAD_COSINE.get(name, GRAD_COSINE_DEFAULT), float(cosine)
    ratio = float(flat(grads16, trained).norm() / flat(grads32, trained).norm())
    assert GRAD_NORM_RATIO[0] < ratio < GRAD_NORM_RATIO[1], ratio

    # and the AdamW step moves it (weights stay float32)
    for n in trained:
        assert after16[n].dtype == torch.float32 and torch.isfinite(after16[n]).all(), n
        assert not torch.equal(after16[n], before[n]), f"{n} did not change"
    assert set(after16) == set(after32)


def test_bf16_losses_reduce_in_float32():
    """The contrastive losses and the geometry the masks come from stay float32 under autocast
    (a bf16 similarity matmul, divided by the temperature, moves the loss by ~1e-2)."""
    from pcssl_train.losses import NTXentLoss, SymmetricInfoNCELoss
    from pcssl_train.models.pointnet import feature_transform_regularizer
    from pcssl_train.ops import project

    torch.manual_seed(0)
    a, b = torch.randn(16, 32), torch.randn(16, 32)
    trans = torch.linalg.qr(torch.randn(3, 8, 8))[0] + 1e-3 * torch.randn(3, 8, 8)
    xyz, K = torch.rand(2, 16, 3) - 0.5, torch.tensor([[[100.0, 0, 111.5], [0, 100.0, 111.5], [0, 0, 1]]] * 2)
    w2c = torch.eye(4).repeat(2, 1, 1)
    w2c[:, 2, 3] = 2.0
    fns = {"nt_xent": lambda: NTXentLoss(0.1)(a, b), "info_nce": lambda: SymmetricInfoNCELoss(0.07)(a, b),
           "feature_reg": lambda: feature_transform_regularizer(trans),
           "project": lambda: project(xyz, K, w2c)[0]}
    for key, fn in fns.items():
        ref = fn()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got = fn()
        assert got.dtype == torch.float32, key
        torch.testing.assert_close(got, ref, rtol=1e-5, atol=1e-5, msg=key)


# --- torch.compile ---------------------------------------------------------------------------
def _have_compiler() -> bool:
    return any(shutil.which(c) for c in ("g++", "c++", "clang++"))


COMPILE = pytest.mark.skipif(not _have_compiler(), reason="torch.compile's inductor backend needs a C++ compiler")
# torch 2.13's inductor emits at::vec code it then compiles without the vector headers when ATen is held
# to its scalar kernels ("'at::vec' has not been declared"): a torch limitation of that setting, which
# no AVX2 or AVX-512 CPU uses (make test KERNELS=default sets it).
SCALAR_ATEN = pytest.mark.skipif(torch.backends.cpu.get_cpu_capability() == "DEFAULT",
                                 reason="inductor's C++ does not compile with ATEN_CPU_CAPABILITY=default (torch 2.13)")


def compiled_step_check(name: str) -> None:
    """The trainer's ``torch.compile(model)`` (default inductor backend, on the CPU here): forward,
    backward and AdamW step agree with eager on the same weights, batch and random draws.

    Inductor generates its own random numbers (Philox) unless fallback_random: with it, the compiled
    torch.rand/randn/bernoulli draw exactly what eager draws after the same seed."""
    import torch._inductor.config as inductor_config

    inductor_config.fallback_random = True
    method, _, batch = tiny(name)
    eager_method, compiled_method = copy.deepcopy(method), copy.deepcopy(method)
    before = {n: p.detach().clone() for n, p in method.named_parameters()}
    loss_e, grads_e, after_e = train_step(eager_method, eager_method, batch)
    loss_c, grads_c, after_c = train_step(torch.compile(compiled_method), compiled_method, batch)

    # fused kernels reorder float32 sums: agreement to float32 rounding, amplified a little by BatchNorm
    assert float(loss_c) == pytest.approx(float(loss_e), rel=1e-4, abs=1e-6)
    trained = touched(grads_e)
    assert trained and trained <= touched(grads_c), sorted(trained - touched(grads_c))
    # Gradients to float32 reordering, measured against the whole gradient (a BatchNorm weight's
    # gradient is a sum of terms that cancel, so its own size is no scale for the rounding). Max
    # pooling (PointNet's 1024 channels, DGCNN's neighbours) routes a gradient by an argmax, which a
    # last-bit difference can move: measured worst 6.5e-4 (SeRP-PointNet's feature T-Net), 1.4e-4
    # (MM-Point); the transformer methods also pass an elementwise rtol 1e-3 / atol 1e-5 check.
    # A missing or wrong gradient is O(1).
    scale = float(flat(grads_e, trained).norm())
    worst = max(((float((grads_c[n] - grads_e[n]).norm()) / scale, n) for n in trained))
    assert worst[0] < 3e-3, worst
    cosine = torch.nn.functional.cosine_similarity(flat(grads_c, trained), flat(grads_e, trained), dim=0)
    assert float(cosine) > 0.9999, float(cosine)
    for n in trained:
        assert not torch.equal(after_c[n], before[n]), f"{n} did not change"
        # AdamW's first step moves each weight by ~lr * sign(grad) however small the gradient: where
        # the gradient is rounding noise (biases before a BatchNorm, whose true gradient is 0) the two
        # runs step apart by up to 2 lr. Where it is well above that noise the steps must agree.
        clear = grads_e[n].abs() > 1e-4
        torch.testing.assert_close(after_c[n][clear], after_e[n][clear], rtol=1e-5, atol=1e-6, msg=n)


# The check runs in a fresh interpreter, as in a `pcssl-train` process: inductor compiles C++ and
# loads it with its OpenMP runtime into the process, and in the full suite's process, which by then
# also holds Blender's, open3d's and numba's native libraries, that ended in a heap corruption abort
# (free(): invalid size) on two different machines, while the same check passed on its own.
_CHILD = ("import sys; sys.path[:0] = {paths!r}; import test_gpu_paths as t; "
          "t.compiled_step_check({name!r}); print('compiled step matches eager')")


@pytest.mark.slow
@COMPILE
@SCALAR_ATEN
@pytest.mark.parametrize("name", METHOD_NAMES)
def test_compiled_training_step_matches_eager(name):
    paths = [str(REPO / "tests" / "train"), str(REPO / "tests")]
    proc = subprocess.run([sys.executable, "-c", _CHILD.format(paths=paths, name=name)], capture_output=True,
                          text=True, timeout=900, cwd=REPO)
    assert proc.returncode == 0 and "compiled step matches eager" in proc.stdout, (proc.stdout + proc.stderr)[-4000:]


# --- benchmarks/gpu_check.py -----------------------------------------------------------------
@pytest.mark.skipif(torch.cuda.is_available(), reason="with a GPU the check runs for minutes; this tests the no-GPU answer")
def test_gpu_check_without_a_gpu_says_so_in_one_line(tmp_path):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("\n") == 1 and "no CUDA GPU" in proc.stdout, proc.stdout
    assert proc.stderr == "", proc.stderr
    assert not (tmp_path / "o").exists()                         # nothing measured, nothing written
    helped = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--help"],
                            capture_output=True, text=True, timeout=120)
    assert helped.returncode == 0 and "Example" in helped.stdout and "--out" in helped.stdout
