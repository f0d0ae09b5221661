"""IRN's class-boundary branch on a frozen backbone: one boundary probability per stride-4 cell.

The backbone is frozen (IRN's choice: only the branch learns); each of its
stages feeds a 1x1 conv + GroupNorm + ReLU, upsampled to stride 4 and fused by
a 1x1 conv. Training and the random walk: :mod:`pixsup.pseudo_labels.boundary`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weights import freeze

STRIDE = 4


class BoundaryNet(nn.Module):
    """Frozen backbone + trainable multi-level boundary branch; ``forward`` gives (B, H/4, W/4) in [0, 1]."""

    def __init__(self, backbone: nn.Module, width: int = 32) -> None:
        super().__init__()
        self.backbone = backbone
        freeze(self.backbone)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.GroupNorm(4, width), nn.ReLU(inplace=True))
            for c in backbone.stage_channels
        )
        self.fuse = nn.Conv2d(width * len(backbone.stage_channels), 1, 1)

    def train(self, mode: bool = True) -> BoundaryNet:
        super().train(mode)
        self.backbone.eval()  # frozen: BatchNorm statistics stay as trained
        return self

    def forward(self, x: Tensor) -> Tensor:
        size = (math.ceil(x.shape[2] / STRIDE), math.ceil(x.shape[3] / STRIDE))
        with torch.no_grad():
            stages = self.backbone.forward_stages(x)
        levels = [
            F.interpolate(branch(stage.float()), size=size, mode="bilinear", align_corners=False)
            for branch, stage in zip(self.branches, stages)
        ]
        return torch.sigmoid(self.fuse(torch.cat(levels, dim=1)))[:, 0]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The branch's parameters (the backbone is frozen)."""
        return [p for p in self.parameters() if p.requires_grad]
