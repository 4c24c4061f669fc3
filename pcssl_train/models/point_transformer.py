"""Point-MAE-style point transformer: mini-PointNet patch tokenizer, MLP position embedding of the
patch centers, ``depth`` pre-norm blocks with the position embedding re-added before each block.

The same encoder serves Point-MAE (visible tokens only, no cls token), SeRP-Transformer and VASP
(cls token; token = Linear([T_e; P_e]), SeRP eq. 6) and the downstream classifier.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from ..ops import group_patches, normalize_patches
from .blocks import TransformerStack, init_weights
from .heads import ClassificationHead
from .registry import register_model


class MiniPointNet(nn.Module):
    """Patch tokenizer (Point-MAE ``Encoder``): (B,G,K,3) -> (B,G,dim)."""

    def __init__(self, dim: int):
        super().__init__()
        self.first_conv = nn.Sequential(nn.Conv1d(3, 128, 1), nn.BatchNorm1d(128), nn.ReLU(inplace=True),
                                        nn.Conv1d(128, 256, 1))
        self.second_conv = nn.Sequential(nn.Conv1d(512, 512, 1), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                                         nn.Conv1d(512, dim, 1))

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        b, g, k, _ = patches.shape
        x = self.first_conv(patches.reshape(b * g, k, 3).transpose(1, 2))          # (BG,256,K)
        x = torch.cat([x.max(dim=2, keepdim=True).values.expand(-1, -1, k), x], dim=1)
        x = self.second_conv(x).max(dim=2).values                                   # (BG,dim)
        return x.reshape(b, g, -1)


def position_mlp(dim: int) -> nn.Sequential:
    """Embedding of patch centers: Linear(3,128), GELU, Linear(128,dim)."""
    return nn.Sequential(nn.Linear(3, 128), nn.GELU(), nn.Linear(128, dim))


@register_model("point_transformer")
class PointTransformerEncoder(nn.Module):
    """Tokens of a point cloud's patches through a transformer encoder.

    ``fusion="add"``: token = T_e, with P_e re-added before every block (Point-MAE).
    ``fusion="concat"``: token = Linear([T_e; P_e]) (SeRP eq. 6), P_e still re-added before every block.
    ``patch_norm="std"`` additionally scales each centered patch to unit std before the tokenizer.
    """

    def __init__(self, num_group: int = 64, group_size: int = 32, width: int = 384, depth: int = 12,
                 num_heads: int = 6, drop_path: float = 0.1, cls_token: bool = False, fusion: str = "add",
                 patch_norm: str = "none"):
        super().__init__()
        if fusion not in ("add", "concat"):
            raise ValueError(f"fusion must be 'add' or 'concat', got {fusion!r}")
        if patch_norm not in ("none", "std"):
            raise ValueError(f"patch_norm must be 'none' or 'std', got {patch_norm!r}")
        self.num_group, self.group_size, self.width = num_group, group_size, width
        self.fusion, self.patch_norm = fusion, patch_norm
        self.tokenizer = MiniPointNet(width)
        self.pos_embed = position_mlp(width)
        self.fuse = nn.Linear(2 * width, width) if fusion == "concat" else None
        if cls_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, width))
            self.cls_pos = nn.Parameter(torch.zeros(1, 1, width))
        else:
            self.cls_token = self.cls_pos = None
        self.transformer = TransformerStack(width, depth, num_heads, drop_path_rate=drop_path)
        init_weights(self)
        if cls_token:
            nn.init.trunc_normal_(self.cls_token, std=0.02)
            nn.init.trunc_normal_(self.cls_pos, std=0.02)

    def group(self, xyz: torch.Tensor):
        """Patches of a (B,N,3) cloud: FPS centers + kNN neighborhoods relative to them."""
        return group_patches(xyz, self.num_group, self.group_size)

    def forward(self, neighborhood: torch.Tensor, center: torch.Tensor, visible: torch.Tensor | None = None):
        """(B,G,K,3) patches, (B,G,3) centers -> (B, [1+] G_visible, width) normalized tokens.

        ``visible`` (B,G) bool keeps the same number of patches per sample (Point-MAE masking). All G
        patches go through the tokenizer and the visible tokens are picked afterwards, as the official
        Point-MAE does: its BatchNorm sees every patch of the batch in training mode."""
        tokens, pos = self.embed(neighborhood, center)
        if visible is not None:
            if self.cls_token is not None:
                visible = torch.cat([visible.new_ones(visible.shape[0], 1), visible], dim=1)
            b, c = tokens.shape[0], tokens.shape[-1]
            tokens, pos = tokens[visible].reshape(b, -1, c), pos[visible].reshape(b, -1, c)
        return self.transformer(tokens, pos)

    def embed(self, neighborhood: torch.Tensor, center: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The transformer's input for all patches: tokens and position embeddings, each
        (B, [1+] G, width) (cls token first when the encoder has one), built as ``forward`` builds them."""
        if self.patch_norm == "std":
            neighborhood = normalize_patches(neighborhood)  # SeRP section 3.3.1 (per patch)
        tokens, pos = self.tokenizer(neighborhood), self.pos_embed(center)
        if self.fuse is not None:
            tokens = self.fuse(torch.cat([tokens, pos], dim=-1))
        if self.cls_token is not None:
            b = tokens.shape[0]
            tokens = torch.cat([self.cls_token.expand(b, -1, -1), tokens], dim=1)
            pos = torch.cat([self.cls_pos.expand(b, -1, -1), pos], dim=1)
        return tokens, pos

    def forward_layers(self, neighborhood: torch.Tensor, center: torch.Tensor, layers) -> list[torch.Tensor]:
        """(B,G,K,3) patches, (B,G,3) centers -> the normalized outputs (B, [1+] G, width) of the blocks
        ``layers`` (0-based, see :meth:`TransformerStack.forward_layers`); the last block's output
        equals ``forward(neighborhood, center)``."""
        tokens, pos = self.embed(neighborhood, center)
        return self.transformer.forward_layers(tokens, pos, layers)

    def forward_visible(self, neighborhood: torch.Tensor, center: torch.Tensor, visible: torch.Tensor):
        """Like ``forward`` with a different number of visible patches per sample (no cls token):
        returns tokens (B,L,width) padded to the largest count L, their patch ``index`` (B,L) and
        ``valid`` (B,L) bool. As in ``forward``, every patch goes through the tokenizer (its BatchNorm
        sees all patches); padded tokens are kept out of attention."""
        if self.cls_token is not None:
            raise ValueError("forward_visible is for encoders without a cls token")
        tokens, pos = self.embed(neighborhood, center)
        counts = visible.sum(dim=1)
        width = int(counts.max())
        index = torch.argsort((~visible).to(torch.int8), dim=1, stable=True)[:, :width]   # visible first, in order
        valid = torch.arange(width, device=visible.device)[None] < counts[:, None]
        gather = index[..., None].expand(-1, -1, tokens.shape[-1])
        tokens = torch.gather(tokens, 1, gather) * valid[..., None].to(tokens.dtype)
        return self.transformer(tokens, torch.gather(pos, 1, gather), mask=valid), index, valid

    def forward_points(self, xyz: torch.Tensor) -> torch.Tensor:
        patches = self.group(xyz)
        return self(patches.neighborhood, patches.center)

    def forward_tokens(self, xyz: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(B,N,3) -> (global tokens (B,1,width) or None, patch tokens (B,G,width)): the encoder's
        output after its final LayerNorm, the cls token (if any) split off."""
        tokens = self.forward_points(xyz)
        if self.cls_token is not None:
            return tokens[:, :1], tokens[:, 1:]
        return None, tokens

    def forward_features(self, xyz: torch.Tensor) -> torch.Tensor:
        """(B,N,3) -> (B, 2 x width) evaluation feature: max and mean over the patch tokens (the cls
        token, if any, left out)."""
        tokens = self.forward_tokens(xyz)[1]
        return torch.cat([tokens.amax(dim=1), tokens.mean(dim=1)], dim=-1)


@register_model("point_transformer_cls", classifier_for="point_transformer")
class PointTransformerClassifier(nn.Module):
    """Encoder with a cls token; feature = [cls ; max over patch tokens] -> ClassificationHead."""

    def __init__(self, num_classes: int = 40, num_group: int = 64, group_size: int = 32, width: int = 384,
                 depth: int = 12, num_heads: int = 6, drop_path: float = 0.1, fusion: str = "add",
                 patch_norm: str = "none", dropout: float = 0.5):
        super().__init__()
        self.encoder = PointTransformerEncoder(num_group, group_size, width, depth, num_heads, drop_path,
                                               cls_token=True, fusion=fusion, patch_norm=patch_norm)
        self.head = ClassificationHead(2 * width, num_classes, dropout=dropout)

    @staticmethod
    def config_from_encoder(config: dict, drop_path: float) -> dict:
        """The config for fine-tuning an exported ``point_transformer`` (``config``): the classifier
        brings its own cls token and takes the fine-tuning drop path."""
        return {**{k: v for k, v in config.items() if k != "cls_token"}, "drop_path": drop_path}

    def forward_features(self, xyz: torch.Tensor) -> torch.Tensor:
        x = self.encoder.forward_points(xyz)
        return torch.cat([x[:, 0], x[:, 1:].max(dim=1).values], dim=-1)

    def forward(self, xyz: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(xyz))
