"""The pretraining loop: AdamW + warmup/cosine, bf16 autocast on GPU, gradient clipping, DDP,
a checkpoint every epoch with exact resume (model, optimizer, scheduler, RNG, epoch, step)."""

from __future__ import annotations

import json
import os
import random
import signal
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
import yaml
from torch.utils.data import DataLoader, DistributedSampler

from ..data import Augment, CmaDataset
from ..errors import TrainError
from ..methods import Method, create_method
from . import checkpoint, distributed
from .config import config_diff, validate
from .initialize import initialize
from .metrics import MetricsLog
from .paths import check_inside, check_output_dir
from .progress import progress_bar
from .schedule import make_scheduler

KILL_AT_STEP = "PCSSL_FAULT_KILL_AT_STEP"  # test hook: SIGKILL this process right after that optimizer step


VIEW_OPTIONS = ("views", "view_choice", "image", "view_points", "num_view_points")


def build_dataset(cfg: dict, data: str | os.PathLike, kind: str):
    """The run's training samples: a cma-build dataset, or for point-only methods (kind "fused") a
    points-only folder (ShapeNet-55, ModelNet; see ``data/point_folder.py``)."""
    from ..data.point_folder import LAYOUTS, PointFolderDataset, point_folder_layout

    d = cfg["data"]
    try:
        augment = Augment(**d["augment"]) if d.get("augment") else None
    except TypeError as e:
        raise TrainError(f"data.augment: {e}") from None
    layout = point_folder_layout(data)
    if layout is not None:
        if kind != "fused":
            raise TrainError(f"{cfg['method']} learns from images and cameras: --data must be a cma-build dataset "
                             f"({data} is a {LAYOUTS[layout].split(' (')[0]} point folder; point-only methods train "
                             f"on it: point-mae, serp-pointnet, serp-transformer, vasp)")
        return PointFolderDataset(data, split=d["split"], categories=d["categories"], num_points=d["num_points"],
                                  augment=augment, seed=cfg["train"]["seed"])
    extra = {k: d[k] for k in VIEW_OPTIONS if k in d}  # only configs of camera-based methods have these
    return CmaDataset(data, kind=kind, split=d["split"], categories=d["categories"], num_points=d["num_points"],
                      sampling=d["sampling"], augment=augment, seed=cfg["train"]["seed"], **extra)


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """No weight decay on biases, norms, learned tokens (Point-MAE) and the VQ codebook (its own loss
    pulls the codes to the encoder outputs; decay would pull them to zero)."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 or name.endswith("token") or "cls_pos" in name or "codebook" in name
                      else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# What a run writes inside its folder (rng-rank*.pt and epoch-*.pt go into checkpoints/ too).
DATA_RECORD = "data.json"
RUN_FILES = ("config.yaml", "config.tmp", "checkpoints", "checkpoints/last.pt", "metrics.csv", "tensorboard",
             "throughput.json", "throughput.json.tmp", DATA_RECORD, DATA_RECORD + ".tmp")


class Trainer:
    def __init__(self, cfg: dict, data: str | os.PathLike, run: str | os.PathLike, device: str | None = None,
                 progress: bool | None = None):
        # Everything that can be wrong (config, run folder, weights, dataset, resume checkpoint) is
        # checked before the run folder is made or changed: a bad input leaves the disk as it was.
        validate(cfg)
        self.cfg, self.run, self.progress, self.data = cfg, Path(run), progress, data
        self.ckpt_path = self.run / "checkpoints" / "last.pt"
        self._check_run_dir()
        self.info = distributed.setup(device)
        o, t = cfg["optim"], cfg["train"]
        seed_everything(t["seed"] + self.info.rank)
        self.method: Method = create_method(cfg["method"], **cfg["model"])
        if cfg.get("init") and not self.ckpt_path.is_file():
            loaded = initialize(self.method, cfg["init"], cfg["model"])
            if self.info.main:
                print(f"initialized {loaded}", file=sys.stderr)
        self.method.to(self.info.device)
        self.dataset = build_dataset(cfg, data, self.method.kind)
        if o["batch_size"] % self.info.world_size:
            raise TrainError(f"optim.batch_size {o['batch_size']} is not divisible by the {self.info.world_size} processes")
        self.batch = o["batch_size"] // self.info.world_size
        if len(self.dataset) < o["batch_size"]:
            raise TrainError(f"{len(self.dataset)} samples in the selected split, fewer than optim.batch_size "
                             f"{o['batch_size']}; use a larger dataset or a smaller batch")
        self.sampler = DistributedSampler(self.dataset, num_replicas=self.info.world_size, rank=self.info.rank,
                                          shuffle=True, seed=t["seed"], drop_last=True)
        self.steps_per_epoch = len(self.sampler) // self.batch
        self.model = self.method
        if self.info.enabled:
            ids = [self.info.device.index] if self.info.device.type == "cuda" else None
            self.model = torch.nn.parallel.DistributedDataParallel(self.method, device_ids=ids)
        if t["compile"] and self.info.device.type == "cuda":
            self.model = torch.compile(self.model)
        self.optimizer = torch.optim.AdamW(param_groups(self.method, o["weight_decay"]), lr=o["lr"],
                                           betas=tuple(o["betas"]))
        self.scheduler = make_scheduler(self.optimizer, o["epochs"] * self.steps_per_epoch,
                                        o["warmup_epochs"] * self.steps_per_epoch, o["min_lr"], o["warmup_lr"])
        self.epoch = self.step = 0
        if self.ckpt_path.is_file():
            self._check_same_data()
            self._resume()
        self._make_run_dir()
        self.amp = self.info.device.type == "cuda" and t["amp"] == "bf16"

    # --- run folder -----------------------------------------------------------------------
    def _check_run_dir(self) -> None:
        """Read-only: the run folder is a run of this very config (resume), or can become one."""
        saved = self.run / "config.yaml"
        check_output_dir(self.run)
        check_inside(self.run, RUN_FILES)   # a link in the run folder pointing elsewhere: refused, not written through
        if saved.is_file():
            try:
                old = yaml.safe_load(saved.read_text())
            except (OSError, yaml.YAMLError) as e:
                raise TrainError(f"{saved}: cannot read the run's config ({getattr(e, 'strerror', None) or 'not valid YAML'}); "
                                 f"choose another --out") from None
            if not isinstance(old, dict):
                raise TrainError(f"{saved}: not a pcssl-train run config; choose another --out")
            diff = config_diff(old, self.cfg)
            if diff:
                raise TrainError(f"{self.run} holds a run with a different config ({diff[0]}); "
                                 f"resume with the same config or choose another --out")
        elif self.run.exists() and any(self.run.iterdir()):
            raise TrainError(f"{self.run} exists and is not a pcssl-train run folder; choose another --out")

    def _make_run_dir(self) -> None:
        distributed.barrier(self.info)   # every process checked its inputs before the folder changes
        saved = self.run / "config.yaml"
        if self.info.main and not saved.is_file():
            self.run.mkdir(parents=True, exist_ok=True)
            tmp = saved.with_suffix(".tmp")
            tmp.write_text(yaml.safe_dump(self.cfg, sort_keys=False))
            os.replace(tmp, saved)
        if self.info.main and not (self.run / DATA_RECORD).is_file():   # what the run trained on (for reports)
            tmp = self.run / (DATA_RECORD + ".tmp")
            tmp.write_text(json.dumps(self.data_record(), indent=1))
            os.replace(tmp, self.run / DATA_RECORD)
        distributed.barrier(self.info)

    def _check_same_data(self) -> None:
        """A run resumes on the data it started on (format and sample count of RUN/data.json)."""
        try:
            rec = json.loads((self.run / DATA_RECORD).read_text("utf-8"))
        except (OSError, ValueError):
            return                       # a run from before data.json was written
        now = self.data_record()
        if isinstance(rec, dict) and (rec.get("format"), rec.get("samples")) != (now["format"], now["samples"]):
            raise TrainError(f"{self.run} was started on {rec.get('description', rec.get('path'))}; --data {self.data} "
                             f"is {now['format']} with {now['samples']} samples: resume with the same data, or choose "
                             f"another --out")

    def data_record(self) -> dict:
        ds = self.dataset
        return {"path": str(Path(self.data).resolve()), "format": getattr(ds, "layout", None) or "cma",
                "samples": len(ds), "split": self.cfg["data"]["split"], "num_points": self.cfg["data"]["num_points"],
                "description": getattr(ds, "description", f"cma-build dataset {self.data} ({len(ds)} objects, "
                                                            f"kind {ds.kind}, sampling {self.cfg['data']['sampling']})")}

    def _resume(self) -> None:
        state = checkpoint.load_untrusted(self.ckpt_path, map_location=self.info.device)
        if not isinstance(state, dict) or state.get("format") != "pcssl-checkpoint/1":
            raise TrainError(f"{self.ckpt_path}: not a pcssl-train run checkpoint, cannot resume from it; "
                             f"choose another --out")
        if state.get("method") != self.cfg["method"]:
            raise TrainError(f"{self.ckpt_path}: a checkpoint of {state.get('method')!r}, this run trains "
                             f"{self.cfg['method']!r}; choose another --out")
        rng = self.ckpt_path.with_name(f"rng-rank{self.info.rank}.pt")
        try:
            self.method.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.scheduler.load_state_dict(state["scheduler"])
            self.epoch, self.step = int(state["epoch"]), int(state["step"])
            if self.info.rank == 0:
                checkpoint.set_rng_state(state["rng"])
            elif rng.is_file():
                checkpoint.set_rng_state(checkpoint.load_untrusted(rng)["rng"])
        except (KeyError, TypeError, ValueError, RuntimeError) as e:
            what = f"missing {e}" if isinstance(e, KeyError) else (str(e).splitlines() or [""])[0][:160]
            raise TrainError(f"{self.ckpt_path}: cannot resume from it ({type(e).__name__}: {what})") from None
        if self.info.main:
            print(f"resuming {self.run} after epoch {self.epoch} (step {self.step})", file=sys.stderr)

    def save(self) -> None:
        if not self.info.main:
            checkpoint.save_atomic({"rng": checkpoint.rng_state()}, self.ckpt_path.with_name(f"rng-rank{self.info.rank}.pt"))
        distributed.barrier(self.info)
        if self.info.main:
            checkpoint.save_atomic({
                "format": "pcssl-checkpoint/1", "method": self.cfg["method"], "config": self.cfg,
                "epoch": self.epoch, "step": self.step, "world_size": self.info.world_size,
                "model": self.method.state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(), "rng": checkpoint.rng_state(),
                "torch": str(torch.__version__)}, self.ckpt_path)
            keep = self.cfg["train"]["keep_every"]
            if keep and self.epoch % keep == 0:
                os.link(self.ckpt_path, self.ckpt_path.with_name(f"epoch-{self.epoch:04d}.pt"))
        distributed.barrier(self.info)

    # --- loop -----------------------------------------------------------------------------
    def fit(self) -> dict:
        cfg, info = self.cfg, self.info
        epochs, clip = cfg["optim"]["epochs"], cfg["optim"]["grad_clip"]
        log_every, kill_at = cfg["train"]["log_every"], int(os.environ.get(KILL_AT_STEP, "0"))
        if self.epoch >= epochs:   # a finished run: nothing to train, nothing to write
            return {"epoch": self.epoch, "step": self.step}
        log = MetricsLog(self.run, self.step, cfg["train"]["tensorboard"]) if info.main else None
        last: dict = {}
        rates: list[float] = []  # samples/s of each epoch of this call (all processes together)
        if info.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(info.device)
        try:
            while self.epoch < epochs:
                self.sampler.set_epoch(self.epoch)
                self.dataset.set_epoch(self.epoch)
                loader = DataLoader(self.dataset, batch_size=self.batch, sampler=self.sampler, drop_last=True,
                                    num_workers=cfg["data"]["workers"], pin_memory=info.device.type == "cuda")
                self.model.train()
                bar = progress_bar(loader, progress=self.progress, main=info.main, total=self.steps_per_epoch,
                                   desc=f"epoch {self.epoch + 1}/{epochs}", leave=False)
                t0, sums = time.perf_counter(), {}
                for batch in bar:
                    batch = {k: v.to(info.device, non_blocking=True) for k, v in batch.items()}
                    with torch.autocast(info.device.type, dtype=torch.bfloat16, enabled=self.amp):
                        out = self.model(batch)
                    loss = out["loss"]
                    if not torch.isfinite(loss):
                        raise TrainError(f"loss is {loss.item()} at step {self.step}; lower optim.lr or check the data")
                    self.optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    grad_norm = torch.nn.utils.clip_grad_norm_(self.method.parameters(), clip) if clip else None
                    lr = self.optimizer.param_groups[0]["lr"]        # the rate this step used
                    self.optimizer.step()
                    self.scheduler.step()
                    self.step += 1
                    if kill_at and self.step == kill_at:
                        os.kill(os.getpid(), signal.SIGKILL)
                    values = {k: float(v.detach()) for k, v in out.items()}
                    for k, v in values.items():
                        sums[k] = sums.get(k, 0.0) + v
                    bar.set_postfix(loss=f"{values['loss']:.4g}")
                    if log is not None and (self.step % log_every == 0 or self.step == 1):
                        log.write({"epoch": self.epoch + 1, "step": self.step,
                                   "lr": lr, **values,
                                   "grad_norm": float(grad_norm) if grad_norm is not None else float("nan"),
                                   "seconds": round(time.perf_counter() - t0, 3)})
                bar.close()
                if info.device.type == "cuda":
                    torch.cuda.synchronize(info.device)
                rates.append(self.steps_per_epoch * self.batch * info.world_size / (time.perf_counter() - t0))
                self.epoch += 1
                self.save()
                n = max(1, self.steps_per_epoch)
                last = {k: v / n for k, v in sums.items()}
                mean = float(distributed.all_reduce_mean(torch.tensor(last.get("loss", float("nan"))), info))
                if info.main:
                    print(f"epoch {self.epoch}/{epochs}: loss {mean:.5g}, lr "
                          f"{self.optimizer.param_groups[0]['lr']:.3g}, {time.perf_counter() - t0:.1f} s, "
                          f"{rates[-1]:.1f} samples/s", file=sys.stderr)
        finally:
            if log is not None:
                log.close()
        if rates and info.main:
            self._write_throughput(rates)
        return {"epoch": self.epoch, "step": self.step, **last}

    def _write_throughput(self, rates: list[float]) -> None:
        """run/throughput.json: samples/s of this call's epochs (the median leaves out the first,
        which pays start-up and compilation, when there are more) and peak memory."""
        info = self.info
        if info.device.type == "cuda":
            memory, kind = torch.cuda.max_memory_allocated(info.device) / 2 ** 20, "torch.cuda.max_memory_allocated"
        else:
            import resource

            memory, kind = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process peak RSS"
        steady = rates[1:] if len(rates) > 1 else rates
        record = {"device": torch.cuda.get_device_name(info.device) if info.device.type == "cuda" else "cpu",
                  "world_size": info.world_size, "global_batch": self.batch * info.world_size,
                  "amp": "bf16" if self.amp else "fp32", "compile": bool(self.cfg["train"]["compile"]),
                  "epochs_timed": len(rates), "samples_per_s_per_epoch": [round(r, 2) for r in rates],
                  "samples_per_s": round(float(statistics.median(steady)), 2),
                  "peak_memory_mb": round(memory, 1), "memory": kind + " (rank 0)", "epoch": self.epoch}
        tmp = self.run / "throughput.json.tmp"
        tmp.write_text(json.dumps(record, indent=1))
        os.replace(tmp, self.run / "throughput.json")

    def close(self) -> None:
        distributed.teardown(self.info)


def pretrain(cfg: dict, data, run, device: str | None = None, progress: bool | None = None) -> dict:
    """Train (or resume) a run. ``progress``: None shows a bar only when stderr is a terminal, True always,
    False never; a line per epoch goes to stderr either way."""
    trainer = Trainer(cfg, data, run, device, progress)
    try:
        result = trainer.fit()
        # every rank reaches the teardown together: a gloo rank that destroyed its group while another
        # was still finishing (rank 0 writes the last files) was seen to abort at exit under CI load
        distributed.barrier(trainer.info)
        return result
    finally:
        trainer.close()
