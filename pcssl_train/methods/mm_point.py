"""MM-Point (multi-modal, multi-view, multi-level contrast; the MM-Point paper): a 3D encoder
f on two augmented copies P1, P2 of the cloud, a 2D encoder g on the object's m rendered views
I_1..I_m, where view j gets the j-th of m increasing augmentation strengths (multi-level
augmentation), and projection heads (Multi-MLP: one 3D head and one 2D head per view level):

- intra-modal: ``NT-Xent(h(f(P1)), h(f(P2)))`` with the intra head h;
- inter-plus: ``sum_j [L(P -> I_j) + L(I_j -> P)]`` with P = ``point_heads[j]((f(P1) + f(P2)) / 2)``
  (CrossPoint contrasts the mean of the two copies with the image) and I_j = ``image_heads[j](g(I_j))``;

``loss = intra + inter_plus``. Only the 3D encoder is exported. 3D encoder: DGCNN (default, as
CrossPoint) or the point transformer; 2D encoder: a from-scratch ResNet-18 (default) or ViT.
The summary gives no hyperparameters; ours are listed in ``configs/mm-point.yaml``.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..errors import TrainError
from ..losses import NTXentLoss
from ..models.dgcnn import DGCNNEncoder
from ..models.heads import ProjectionHead
from ..models.image_transformer import ImageTransformerEncoder
from ..models.point_transformer import PointTransformerEncoder
from ..models.resnet import ResNet
from .base import Method
from .multiview_augment import augment_clouds, augment_images, strength_levels
from .registry import register_method

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
POINT_ENCODERS = ("dgcnn", "transformer")
IMAGE_ENCODERS = ("resnet", "vit")


class ViewCountError(TrainError, ValueError):
    """The batch has another number of views than the model has view levels (a ValueError, and a
    TrainError so the CLI reports it in one line)."""


@register_method("mm-point")
class MMPoint(Method):
    kind = "multiview"

    def __init__(self, point_encoder: str, k: int, emb_dims: int, num_group: int, group_size: int, width: int,
                 depth: int, num_heads: int, drop_path: float, image_encoder: str, image_size: int, resnet_width: int,
                 resnet_layers: Sequence[int], patch_size: int, image_width: int, image_depth: int, image_heads: int,
                 views: int, multi_mlp: bool, proj_hidden: int, proj_dim: int, intra: bool, inter: bool,
                 temperature: float, strength_min: float, strength_max: float, rotate_deg: float, scale_low: float,
                 scale_high: float, translate: float, jitter_sigma: float, jitter_clip: float):
        super().__init__()
        if point_encoder not in POINT_ENCODERS:
            raise ValueError(f"point_encoder must be one of {', '.join(POINT_ENCODERS)}, got {point_encoder!r}")
        if image_encoder not in IMAGE_ENCODERS:
            raise ValueError(f"image_encoder must be one of {', '.join(IMAGE_ENCODERS)}, got {image_encoder!r}")
        if not (intra or inter):
            raise ValueError("intra and inter are both off: enable at least one loss")
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        if not 0.0 <= strength_min <= strength_max <= 1.0:
            raise ValueError(f"need 0 <= strength_min <= strength_max <= 1, got {strength_min}, {strength_max}")
        self.point_encoder_name, self.image_encoder_name = point_encoder, image_encoder
        self.views, self.multi_mlp, self.use_intra, self.use_inter = views, multi_mlp, intra, inter
        self.image_size = image_size
        self.cloud_aug = dict(rotate_deg=rotate_deg, scale_low=scale_low, scale_high=scale_high, translate=translate,
                              jitter_sigma=jitter_sigma, jitter_clip=jitter_clip)
        if point_encoder == "dgcnn":
            self.encoder_cfg = dict(k=k, emb_dims=emb_dims)
            self.encoder = DGCNNEncoder(**self.encoder_cfg)
            point_dim = 2 * emb_dims
        else:
            self.encoder_cfg = dict(num_group=num_group, group_size=group_size, width=width, depth=depth,
                                    num_heads=num_heads, drop_path=drop_path, cls_token=True)
            self.encoder = PointTransformerEncoder(**self.encoder_cfg)
            point_dim = 2 * width
        if intra:
            self.intra_head = ProjectionHead(point_dim, proj_hidden, proj_dim)
        if inter:
            if image_encoder == "resnet":
                self.image_encoder = ResNet(num_classes=0, layers=tuple(resnet_layers), base_width=resnet_width)
                image_dim = self.image_encoder.feature_dim
            else:
                self.image_encoder = ImageTransformerEncoder(image_size, patch_size, image_width, image_depth,
                                                             image_heads, drop_path)
                image_dim = image_width
            levels = views if multi_mlp else 1   # multi_mlp off: one shared head per modality (ablation)
            self.point_heads = nn.ModuleList(ProjectionHead(point_dim, proj_hidden, proj_dim) for _ in range(levels))
            self.image_heads = nn.ModuleList(ProjectionHead(image_dim, proj_hidden, proj_dim) for _ in range(levels))
            self.register_buffer("strengths", torch.tensor(strength_levels(views, strength_min, strength_max)),
                                 persistent=False)
            self.register_buffer("image_mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
            self.register_buffer("image_std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.nt_xent = NTXentLoss(temperature)

    # --- encoders ----------------------------------------------------------------------------
    def encode_points(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B, N, 3) -> (B, D) global 3D feature: DGCNN's [max; avg] pool, or the transformer's
        [cls token; max over patch tokens] (as ``PointTransformerClassifier.forward_features``)."""
        if self.point_encoder_name == "dgcnn":
            return self.encoder(xyz)
        tokens = self.encoder.forward_points(xyz)
        return torch.cat([tokens[:, 0], tokens[:, 1:].max(dim=1).values], dim=-1)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """Normalized (B, 3, S, S) images -> (B, D): ResNet's pooled feature or the ViT's mean token."""
        if self.image_encoder_name == "resnet":
            return self.image_encoder(images)
        return self.image_encoder(images).mean(dim=1)

    def view_images(self, rgb: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) in [0, 1] -> (B*V, 3, S, S): resized to ``image_size`` (bilinear,
        antialiased) if needed, view j augmented with strength ``strengths[j]``, ImageNet-normalized."""
        b, v = rgb.shape[:2]
        x = rgb.reshape(b * v, *rgb.shape[2:]).float()
        if x.shape[-2:] != (self.image_size, self.image_size):
            x = F.interpolate(x, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False,
                              antialias=True).clamp(0, 1)
        x = augment_images(x, self.strengths.repeat(b))          # sample-major: image b*V + j is view j
        return (x - self.image_mean) / self.image_std

    # --- forward -------------------------------------------------------------------------------
    def forward(self, batch):
        xyz = batch["points"]
        b = xyz.shape[0]
        if self.use_inter:
            rgb = batch["rgb"]
            if rgb.ndim != 5 or rgb.shape[1] != self.views:
                got = rgb.shape[1] if rgb.ndim == 5 else f"a {rgb.ndim}-d rgb"
                raise ViewCountError(f"mm-point model has {self.views} view levels but the batch has {got} views "
                                     f"per object; set data.views and model.views alike")
        with torch.autocast(xyz.device.type, enabled=False):     # augment in fp32 even under bf16 autocast
            clouds = torch.cat([augment_clouds(xyz.float(), **self.cloud_aug),
                                augment_clouds(xyz.float(), **self.cloud_aug)])
            images = self.view_images(rgb) if self.use_inter else None
        f = self.encode_points(clouds)                            # both copies in one pass, as CrossPoint
        f1, f2 = f[:b], f[b:]
        zero = f.new_zeros((), dtype=torch.float32)
        intra = inter = zero
        if self.use_intra:
            z = self.intra_head(f)
            intra = self.nt_xent(z[:b], z[b:])
        if self.use_inter:
            g = self.encode_images(images).reshape(b, self.views, -1)
            fp = (f1 + f2) / 2
            for j in range(self.views):
                h = j if self.multi_mlp else 0
                # Inter-plus: L(P -> I_j) + L(I_j -> P). NTXentLoss is symmetric and returns the MEAN of
                # the two directions, (L(P -> I_j) + L(I_j -> P)) / 2, so the literal sum is twice it.
                inter = inter + 2 * self.nt_xent(self.point_heads[h](fp), self.image_heads[h](g[:, j]))
        return {"loss": intra + inter, "intra": intra.detach(), "inter": inter.detach()}

    def encoder_export(self):
        name = "dgcnn_encoder" if self.point_encoder_name == "dgcnn" else "point_transformer"
        return name, dict(self.encoder_cfg), self.encoder.state_dict()
