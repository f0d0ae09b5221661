"""DeepLab-v2: a dilated backbone and ASPP, parallel 3x3 convolutions at several rates whose logits are summed."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..data.voc_format import NUM_CLASSES


class SegNet(nn.Module):
    """Backbone + ASPP classifier; ``forward`` returns logits (B, classes, H, W) at the input size."""

    def __init__(
        self, backbone: nn.Module, rates: tuple[int, ...] = (6, 12, 18, 24), num_classes: int = NUM_CLASSES
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.aspp = nn.ModuleList(
            nn.Conv2d(backbone.out_channels, num_classes, 3, padding=r, dilation=r) for r in rates
        )
        for conv in self.aspp:
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        features = self.backbone(x)
        logits = sum(conv(features) for conv in self.aspp)
        return F.interpolate(logits, size=x.shape[2:], mode="bilinear", align_corners=False)

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, ASPP parameters), trainable ones only: the ASPP gets a larger lr."""
        return (
            [p for p in self.backbone.parameters() if p.requires_grad],
            [p for p in self.aspp.parameters() if p.requires_grad],
        )
