"""Part segmentation fine-tuning by the Point-MAE protocol (Pang et al. 2022, ``segmentation/``).

Model (:class:`PartSegModel`), for an encoder of width ``w`` and depth ``d``:

* the point transformer encoder (``PointTransformerEncoder``) over FPS+kNN patches of the cloud;
  the outputs of blocks ``round(d*k/3)``, k = 1, 2, 3 (1-based; blocks 4, 8, 12 at depth 12, which is
  Point-MAE's ``fetch_idx = [3, 7, 11]``), each through the encoder's final LayerNorm, concatenated per
  patch token: ``F = 3w`` channels (fewer when d < 3 makes the blocks coincide; a cls token, if the
  encoder has one, is dropped);
* global feature: max and mean over the patch tokens (``F`` each) and a shape-category embedding
  (one-hot -> Conv1d(num_categories, 64, bias=False) -> BN -> LeakyReLU(0.2));
* PointNet++ feature propagation from the patch centers to every point: the 3 nearest centers,
  weights ``1 / (d^2 + 1e-8)`` normalized (``d^2`` the *squared* distance, as PointNet++'s
  ``square_distance`` used by Point-MAE), the point's xyz concatenated in front of the interpolated
  features, then Conv1d-BN-ReLU twice: ``F + 3 -> 4w -> round(8w/3)`` (= 1536, 1024 at w = 384, as
  Point-MAE's ``mlp=[trans_dim * 4, 1024]``; scaled with the width for small encoders);
* head on [propagated ; max ; mean ; label] per point: Conv1d(., 512)-BN-ReLU-Dropout(0.5)-
  Conv1d(512, 256)-BN-ReLU-Conv1d(256, num_parts) -> logits (B, num_parts, N) (Point-MAE applies
  log_softmax + NLL, i.e. the cross entropy used here).

Recipe (:func:`finetune_partseg`), as Point-MAE's ``segmentation/main.py``: AdamW (weight decay 0.05, none
on norms, biases and tokens), lr 2e-4, 10 warmup epochs from 1e-6 then cosine to 1e-6, batch 16, 300 epochs
(a shorter run warms up for 1/30 of its epochs, as 10 of 300: see
:func:`~pcssl_train.eval.finetune.warmup_steps`), gradient norm clipped at 10, clouds normalized to the unit
sphere (centroid at the origin, largest norm 1), training augmentation: random scale in [0.8, 1.25] and
shift in [-0.1, 0.1] per axis, one draw per shape (PointNet++'s ``random_scale_point_cloud`` /
``shift_point_cloud``), evaluation on the test set after every epoch with predictions restricted to the
parts of the shape's category.

Deliberate differences from Point-MAE:

* the learning rate follows the schedule per optimizer step over the whole run (Point-MAE's timm
  scheduler steps per epoch and has ``t_initial=100`` hard-coded, so with 300 epochs it sits at the
  minimum after epoch 100); Point-MAE also takes a second optimizer step per batch after clipping,
  which is not reproduced (one clipped step per batch);
* every point of a ``PointSet`` cloud is used (Point-MAE resamples 2048 points per shape);
* the head's layers use PyTorch's default initialization as Point-MAE; the encoder is the project's
  ``PointTransformerEncoder`` (any of its configs: cls token, fusion, patch norm), loaded strictly.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from cma_builder.geometry.normalize import normalize_clouds

from ..engine.progress import epoch_line, progress_bar
from ..engine.schedule import make_scheduler
from ..engine.trainer import param_groups
from ..errors import TrainError
from ..models.point_transformer import PointTransformerEncoder
from ..models.registry import check_kwargs
from ..ops import gather_points, knn
from .finetune import warmup_steps
from .pointset import PointSet

ENCODER = "point_transformer"


def feature_layers(depth: int) -> list[int]:
    """0-based indices of the blocks whose outputs feed the segmentation head: the 1-based blocks
    ``round(depth * k / 3)`` for k = 1, 2, 3 (at least 1), deduplicated: [3, 7, 11] at depth 12."""
    out: list[int] = []
    for k in (1, 2, 3):
        i = max(1, round(depth * k / 3)) - 1
        if i not in out:
            out.append(i)
    return out


def interpolate_features(xyz: torch.Tensor, centers: torch.Tensor, feats: torch.Tensor, k: int = 3,
                         eps: float = 1e-8) -> torch.Tensor:
    """PointNet++ feature propagation's interpolation: features of the ``k`` nearest centers of each
    point, weighted by ``1 / (squared distance + eps)`` normalized to sum 1.

    Args:
        xyz: (B, N, 3) points to interpolate at.
        centers: (B, G, 3) points the features live on (``k`` is capped at G).
        feats: (B, G, C) their features.

    Returns:
        (B, N, C); differentiable w.r.t. ``feats`` (and the distances, through ``knn``).
    """
    k = min(k, centers.shape[1])
    dist2, idx = knn(xyz, centers, k)                                    # (B,N,k)
    weight = 1.0 / (dist2 + eps)
    weight = weight / weight.sum(dim=-1, keepdim=True)
    return (gather_points(feats, idx) * weight[..., None].to(feats.dtype)).sum(dim=2)


class FeaturePropagation(nn.Module):
    """PointNet++ ``PointNetFeaturePropagation`` for one level: interpolate, put xyz in front, then
    Conv1d-BN-ReLU per entry of ``mlp``. ``in_channels`` counts the 3 xyz channels."""

    def __init__(self, in_channels: int, mlp: Sequence[int]):
        super().__init__()
        layers: list[nn.Module] = []
        for out in mlp:
            layers += [nn.Conv1d(in_channels, out, 1), nn.BatchNorm1d(out), nn.ReLU(inplace=True)]
            in_channels = out
        self.mlp = nn.Sequential(*layers)
        self.out_channels = in_channels

    def forward(self, xyz: torch.Tensor, centers: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        """(B,N,3) points, (B,G,3) centers, (B,G,C) features -> (B, out_channels, N)."""
        x = torch.cat([xyz, interpolate_features(xyz, centers, feats)], dim=-1)
        return self.mlp(x.transpose(1, 2))


class PartSegModel(nn.Module):
    """Point-MAE's part segmentation model around a ``PointTransformerEncoder`` (module docstring).

    ``encoder_cfg``: keyword arguments of ``PointTransformerEncoder``. ``layers``: 0-based block
    indices to take features from (default :func:`feature_layers` of the encoder's depth).
    ``forward(xyz (B,N,3), category (B,) int64)`` -> logits (B, num_parts, N)."""

    def __init__(self, encoder_cfg: dict, num_categories: int, num_parts: int, layers: Sequence[int] | None = None,
                 label_dim: int = 64, dropout: float = 0.5):
        super().__init__()
        self.encoder = PointTransformerEncoder(**encoder_cfg)
        width = self.encoder.width
        self.layers = list(layers) if layers is not None else feature_layers(len(self.encoder.transformer.blocks))
        self.num_categories, self.num_parts = num_categories, num_parts
        feat = len(self.layers) * width
        self.label_conv = nn.Sequential(nn.Conv1d(num_categories, label_dim, 1, bias=False), nn.BatchNorm1d(label_dim),
                                        nn.LeakyReLU(0.2))
        self.propagation = FeaturePropagation(feat + 3, [4 * width, round(8 * width / 3)])
        self.head = nn.Sequential(
            nn.Conv1d(self.propagation.out_channels + 2 * feat + label_dim, 512, 1), nn.BatchNorm1d(512),
            nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Conv1d(512, 256, 1), nn.BatchNorm1d(256), nn.ReLU(inplace=True),
            nn.Conv1d(256, num_parts, 1))

    def forward(self, xyz: torch.Tensor, category: torch.Tensor) -> torch.Tensor:
        n = xyz.shape[1]
        patches = self.encoder.group(xyz)
        feats = self.encoder.forward_layers(patches.neighborhood, patches.center, self.layers)
        if self.encoder.cls_token is not None:
            feats = [f[:, 1:] for f in feats]
        x = torch.cat(feats, dim=-1)                                               # (B,G,F)
        one_hot = F.one_hot(category.long(), self.num_categories).to(x.dtype)[..., None]
        global_feat = torch.cat([x.max(dim=1).values[..., None], x.mean(dim=1)[..., None],
                                 self.label_conv(one_hot)], dim=1)                  # (B,2F+64,1)
        local = self.propagation(xyz, patches.center, x)                            # (B,C,N)
        return self.head(torch.cat([local, global_feat.expand(-1, -1, n)], dim=1))


# --------------------------------------------------------------------------------------- metrics


def category_part_mask(parts_of_class: Sequence[Sequence[int]], num_parts: int | None = None) -> torch.Tensor:
    """(num_categories, num_parts) bool: which part ids each category can have."""
    num_parts = num_parts if num_parts is not None else 1 + max(p for parts in parts_of_class for p in parts)
    mask = torch.zeros(len(parts_of_class), num_parts, dtype=torch.bool)
    for c, parts in enumerate(parts_of_class):
        mask[c, list(parts)] = True
    return mask


def restrict_predictions(logits: torch.Tensor, labels: torch.Tensor, parts_of_class: Sequence[Sequence[int]]
                         ) -> torch.Tensor:
    """(B, num_parts, P) logits -> (B, P) int64 part ids, the argmax over only the parts of each
    shape's category ``labels`` (B,) (the official ShapeNetPart evaluation)."""
    mask = category_part_mask(parts_of_class, logits.shape[1]).to(logits.device)[labels.long()]   # (B,parts)
    return logits.masked_fill(~mask[:, :, None], float("-inf")).argmax(dim=1)


def part_miou(pred, seg, labels, parts_of_class: Sequence[Sequence[int]], class_names: Sequence[str] | None = None
              ) -> dict:
    """ShapeNetPart mIoU.

    ``pred``: (N, P) predicted part ids, or (N, num_parts, P) logits, which are first reduced by
    :func:`restrict_predictions`; ``seg`` (N, P) true part ids; ``labels`` (N,) category indices.
    For each shape and each part p of its category: IoU = |pred==p & seg==p| / |pred==p | seg==p|,
    1.0 when p is in neither; the shape's IoU is the mean over its category's parts.

    Returns ``instance_miou`` (mean over shapes), ``category_miou`` (mean over the categories present
    of their shapes' mean) and ``per_category`` {name: mean shape IoU} (names from ``class_names``,
    else the category index as a string; categories without shapes are left out)."""
    labels = torch.as_tensor(labels).long().cpu()
    pred = torch.as_tensor(pred)
    if pred.ndim == 3:
        pred = restrict_predictions(pred, labels.to(pred.device), parts_of_class)
    pred, seg = pred.long().cpu().numpy(), torch.as_tensor(seg).long().cpu().numpy()
    labels = labels.numpy()
    if pred.shape != seg.shape or pred.ndim != 2 or len(labels) != len(seg):
        raise ValueError(f"part_miou: pred {pred.shape}, seg {seg.shape} and labels {labels.shape} do not match")
    if len(seg) == 0:
        raise ValueError("part_miou: no shapes")
    shape_iou = np.empty(len(seg))
    for i, (p, g, c) in enumerate(zip(pred, seg, labels)):
        ious = []
        for part in parts_of_class[c]:
            pp, gg = p == part, g == part
            union = np.count_nonzero(pp | gg)
            ious.append(1.0 if union == 0 else np.count_nonzero(pp & gg) / union)
        shape_iou[i] = np.mean(ious)
    per_category = {}
    for c in np.unique(labels):
        name = class_names[c] if class_names is not None else str(int(c))
        per_category[name] = float(shape_iou[labels == c].mean())
    return {"instance_miou": float(shape_iou.mean()), "category_miou": float(np.mean(list(per_category.values()))),
            "per_category": per_category}


# ------------------------------------------------------------------------------------ fine-tuning


def encoder_config(encoder_cfg: dict) -> dict:
    """The ``PointTransformerEncoder`` keyword arguments of ``encoder_cfg``: either those arguments
    themselves or an export-like dict ``{"model": name, "config": {...}}`` (``pcssl-train export``);
    TrainError for another encoder or an unknown key."""
    if "model" in encoder_cfg:
        name, cfg = encoder_cfg["model"], dict(encoder_cfg.get("config") or {})
    else:
        name, cfg = ENCODER, dict(encoder_cfg)
    if name != ENCODER:
        raise TrainError(f"part segmentation needs a {ENCODER} encoder (got {name})")
    check_kwargs(PointTransformerEncoder, cfg, f"encoder {ENCODER!r}")
    return cfg


def _names(keys: list[str], most: int = 3) -> str:
    return ", ".join(keys[:most]) + (f" (+{len(keys) - most} more)" if len(keys) > most else "")


def load_encoder_state(encoder: nn.Module, state: dict) -> None:
    """``encoder.load_state_dict(state, strict=True)`` with a one-line TrainError on any mismatch."""
    own = encoder.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = ([f"missing {_names(missing)}"] if missing else []) + \
               ([f"unexpected {_names(unexpected)}"] if unexpected else []) + \
               ([f"shape mismatch {_names(shapes)}"] if shapes else [])
    if problems:
        raise TrainError(f"encoder weights do not fit the encoder config: {'; '.join(problems)}")
    encoder.load_state_dict(state, strict=True)


def _check_sets(train: PointSet, test: PointSet) -> None:
    for which, s in (("train", train), ("test", test)):
        if s.seg is None:
            raise TrainError(f"part segmentation needs per-point part labels (ShapeNetPart); the {which} set has none")
        if not s.parts_of_class:
            raise TrainError(f"part segmentation needs the parts of each category; the {which} set has none")
        if len(s) == 0:
            raise TrainError(f"the {which} set is empty")
    if list(train.class_names) != list(test.class_names) or \
            [list(p) for p in train.parts_of_class] != [list(p) for p in test.parts_of_class]:
        raise TrainError("train and test sets disagree on the categories or their parts")
    if len(train.parts_of_class) != train.num_classes:
        raise TrainError(f"{train.num_classes} categories but parts for {len(train.parts_of_class)}")
    for which, s in (("train", train), ("test", test)):
        if s.labels.min() < 0 or s.labels.max() >= s.num_classes:
            raise TrainError(f"{which} set: category labels outside [0, {s.num_classes})")
        if s.seg.min() < 0 or s.seg.max() >= train.num_parts:
            raise TrainError(f"{which} set: part ids outside [0, {train.num_parts})")


@torch.no_grad()
def evaluate_partseg(model: PartSegModel, points: torch.Tensor, labels: torch.Tensor, seg: torch.Tensor,
                     parts_of_class, class_names=None, batch_size: int = 16, device="cpu") -> dict:
    """:func:`part_miou` of ``model`` (eval mode) on (N,P,3) ``points`` (already normalized)."""
    model.eval()
    preds = []
    for start in range(0, len(points), batch_size):
        xyz = points[start:start + batch_size].to(device)
        lab = labels[start:start + batch_size].to(device)
        preds.append(restrict_predictions(model(xyz, lab), lab, parts_of_class).cpu())
    return part_miou(torch.cat(preds), seg, labels, parts_of_class, class_names)


def finetune_partseg(encoder_cfg: dict, encoder_state: dict | None, train: PointSet, test: PointSet, *,
                     epochs: int = 300, batch_size: int = 16, lr: float = 2e-4, weight_decay: float = 0.05,
                     warmup_epochs: float = 10, seed: int = 0, device="cpu", progress: bool | None = None,
                     log: Callable[[dict], None] | None = None, eval_every: int = 1, min_lr: float = 1e-6,
                     warmup_lr: float = 1e-6, clip_grad: float | None = 10.0, augment: bool = True) -> dict:
    """Fine-tune a point transformer (``encoder_state`` weights, or a random init when None) for part
    segmentation on ``train`` and evaluate on ``test`` every ``eval_every`` epochs (and after the last).

    ``encoder_cfg``: see :func:`encoder_config`. ``warmup_epochs`` caps the linear warmup, which lasts
    ``min(warmup_epochs, epochs / 30)`` epochs (:func:`~pcssl_train.eval.finetune.warmup_steps`). Returns
    ``instance_miou``, ``category_miou`` and ``per_category`` of the last evaluation, ``best_instance_miou`` /
    ``best_category_miou`` over the evaluations, ``epochs``, ``warmup_epochs`` (the warmup used), and
    ``history``: one row per epoch {epoch (1-based), loss (mean training loss), lr, instance_miou,
    category_miou} (the mIoUs None on epochs without evaluation); ``log(row)`` is called with each row.
    ``progress``: None shows a bar only when stderr is a terminal, True always, False never; when it is hidden,
    a line per epoch goes to stderr."""
    cfg = encoder_config(encoder_cfg)
    _check_sets(train, test)
    if epochs < 1 or eval_every < 1:
        raise TrainError(f"epochs ({epochs}) and eval_every ({eval_every}) must be >= 1")
    if len(train) < 2:
        raise TrainError(f"part segmentation needs at least 2 training shapes (BatchNorm), got {len(train)}")
    batch = min(batch_size, len(train))
    if batch < 2:
        raise TrainError(f"batch_size must be >= 2 (BatchNorm), got {batch_size}")
    n_points = min(train.points.shape[1], test.points.shape[1])
    need = max(cfg.get("num_group", 64), cfg.get("group_size", 32))
    if n_points < need:
        raise TrainError(f"clouds of {n_points} points are too small for the encoder's num_group/group_size ({need})")
    device = torch.device(device)
    parts_of_class = [list(p) for p in train.parts_of_class]

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = PartSegModel(cfg, train.num_classes, train.num_parts)
    if encoder_state is not None:
        load_encoder_state(model.encoder, encoder_state)
    model.to(device)

    train_pts = torch.from_numpy(normalize_clouds(train.points))
    train_lab, train_seg = torch.from_numpy(train.labels), torch.from_numpy(train.seg)
    test_pts = torch.from_numpy(normalize_clouds(test.points))
    test_lab, test_seg = torch.from_numpy(test.labels), torch.from_numpy(test.seg)

    steps = len(train) // batch  # drop_last, as Point-MAE
    optimizer = torch.optim.AdamW(param_groups(model, weight_decay), lr=lr)
    warmup = warmup_steps(epochs, steps, warmup_epochs)  # min(warmup_epochs, epochs / 30) epochs
    scheduler = make_scheduler(optimizer, epochs * steps, warmup, min_lr, warmup_lr)
    criterion = nn.CrossEntropyLoss()

    history: list[dict] = []
    metrics: dict = {}
    best_inst = best_cat = float("-inf")
    bar = progress_bar(range(epochs), progress=progress, desc="partseg", unit="epoch")
    for epoch in bar:
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train), generator=gen)
        lr_now = optimizer.param_groups[0]["lr"]
        total = 0.0
        for s in range(steps):
            index = order[s * batch:(s + 1) * batch]
            xyz = train_pts[index]
            if augment:
                scale = torch.empty(len(index), 1, 1).uniform_(0.8, 1.25, generator=gen)
                shift = torch.empty(len(index), 1, 3).uniform_(-0.1, 0.1, generator=gen)
                xyz = xyz * scale + shift
            xyz, lab, target = xyz.to(device), train_lab[index].to(device), train_seg[index].to(device)
            loss = criterion(model(xyz, lab), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip_grad:
                nn.utils.clip_grad_norm_(model.parameters(), clip_grad)
            optimizer.step()
            scheduler.step()
            total += float(loss.detach())
        row = {"epoch": epoch + 1, "loss": total / steps, "lr": lr_now, "instance_miou": None, "category_miou": None}
        if (epoch + 1) % eval_every == 0 or epoch + 1 == epochs:
            metrics = evaluate_partseg(model, test_pts, test_lab, test_seg, parts_of_class, test.class_names,
                                       batch, device)
            row["instance_miou"], row["category_miou"] = metrics["instance_miou"], metrics["category_miou"]
            best_inst = max(best_inst, metrics["instance_miou"])
            best_cat = max(best_cat, metrics["category_miou"])
            bar.set_postfix(loss=f"{row['loss']:.4f}", ins_miou=f"{metrics['instance_miou']:.4f}")
        else:
            bar.set_postfix(loss=f"{row['loss']:.4f}")
        history.append(row)
        epoch_line(bar, f"partseg epoch {epoch + 1}/{epochs}: loss {row['loss']:.4g}"
                        + ("" if row["instance_miou"] is None else
                           f", instance mIoU {row['instance_miou']:.4f}, category mIoU {row['category_miou']:.4f}")
                        + f", {time.perf_counter() - t0:.1f} s")
        if log is not None:
            log(dict(row))
    bar.close()
    return {"instance_miou": metrics["instance_miou"], "category_miou": metrics["category_miou"],
            "best_instance_miou": best_inst, "best_category_miou": best_cat,
            "per_category": metrics["per_category"], "epochs": epochs,
            "warmup_epochs": round(warmup / max(1, steps), 3), "history": history}
