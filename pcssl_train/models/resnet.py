"""ResNet (He et al., CVPR 2016) from scratch, torchvision's layout without torchvision: 7x7 stride-2
stem + 3x3 stride-2 max pool, four stages of BasicBlocks (ResNet-18: ``layers=(2, 2, 2, 2)``,
widths 64-128-256-512), global average pooling. ``base_width`` scales every width (64 = ResNet-18;
8 gives a tiny network for CPU tests). ResNet-18 without its fc layer: 11.18M parameters.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn

from .registry import register_model


class BasicBlock(nn.Module):
    """conv3x3-BN-ReLU-conv3x3-BN + shortcut (1x1 conv + BN when the shape changes), then ReLU."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or c_in != c_out:
            self.downsample = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


@register_model("resnet")
class ResNet(nn.Module):
    """``forward(images (B, 3, H, W))`` -> (B, num_classes) logits, or the (B, ``feature_dim``) pooled
    features when ``num_classes == 0`` (an encoder). ``feature_dim = 8 * base_width``."""

    def __init__(self, num_classes: int = 0, layers: Sequence[int] = (2, 2, 2, 2), base_width: int = 64,
                 in_channels: int = 3):
        super().__init__()
        if base_width < 1 or not layers or any(n < 1 for n in layers):
            raise ValueError(f"resnet needs base_width >= 1 and >= 1 block per stage (got {base_width}, {list(layers)})")
        self.stem = nn.Sequential(nn.Conv2d(in_channels, base_width, 7, 2, 3, bias=False), nn.BatchNorm2d(base_width),
                                  nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1))
        stages, c_in = [], base_width
        for i, blocks in enumerate(layers):
            c_out = base_width * 2 ** i
            stages.append(nn.Sequential(*(BasicBlock(c_in if b == 0 else c_out, c_out, 2 if (b == 0 and i > 0) else 1)
                                          for b in range(blocks))))
            c_in = c_out
        self.stages = nn.Sequential(*stages)
        self.feature_dim = c_in
        self.fc = nn.Linear(c_in, num_classes) if num_classes else None
        for m in self.modules():  # torchvision's initialization
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward_features(self, images: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(images)).mean(dim=(2, 3))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.forward_features(images)
        return x if self.fc is None else self.fc(x)
