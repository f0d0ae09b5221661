"""IRN's class-boundary branch on a frozen backbone: one boundary probability per stride-4 cell.

The backbone is frozen (IRN's choice: only the branch learns); each of its
stages feeds a 1x1 conv + GroupNorm, upsampled (bilinear) to stride 4, then a
ReLU, as IRN's ``fc_edge1..5``; a 1x1 conv with bias fuses them (``fc_edge6``).
On ResNet-50 the stages are IRN's five: the stem after max pooling, layer1..4.
Training and the random walk: :mod:`pixsup.pseudo_labels.boundary`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .weights import freeze

STRIDE = 4


class BoundaryNet(nn.Module):
    """Frozen backbone + trainable multi-level boundary branch; ``forward`` gives (B, H/4, W/4) in [0, 1],
    the sigmoid of :meth:`logits`."""

    #: Square crop the branch was trained on (set by the builder); inference pads images up to it, as
    #: IRN's ``EdgeDisplacement`` does (GroupNorm statistics depend on the padded size).
    crop_size: int | None = None

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
        return torch.sigmoid(self.logits(x))

    def logits(self, x: Tensor) -> Tensor:
        """Boundary logits (B, ceil(H/4), ceil(W/4)).

        Each level is resized to the stride-4 grid between its GroupNorm and its ReLU (IRN's order);
        on an input whose sides are multiples of the backbone's stride that is IRN's integer upsampling.
        """
        size = (math.ceil(x.shape[2] / STRIDE), math.ceil(x.shape[3] / STRIDE))
        with torch.no_grad():
            stages = self.backbone.forward_stages(x)
        levels = []
        for branch, stage in zip(self.branches, stages):
            conv, norm, relu = branch
            level = norm(conv(stage.float()))
            if level.shape[2:] != size:
                level = F.interpolate(level, size=size, mode="bilinear", align_corners=False)
            levels.append(relu(level))
        return self.fuse(torch.cat(levels, dim=1))[:, 0]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """The branch's parameters (the backbone is frozen)."""
        return [p for p in self.parameters() if p.requires_grad]
