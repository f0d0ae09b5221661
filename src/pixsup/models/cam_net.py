"""The CAM network: backbone + CAM head + projection head. MainNet and SupportNet share it."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class CamNet(nn.Module):
    """Backbone features -> class activation maps and L2-normalised pixel embeddings.

    ``forward`` returns a dict:

    - ``cam``: (B, C, h, w) raw class activation maps (CAM head, 1x1 conv, no bias);
    - ``logits``: (B, C) global average of ``cam`` (equal to the head applied to
      pooled features, the head being linear);
    - ``proj``: (B, D, h, w) projected features, unit length per pixel
      (only when ``with_proj``);
    - ``features``: (B, channels, h, w) the backbone's output (only when ``with_features``).
    """

    def __init__(self, backbone: nn.Module, num_classes: int = 20, proj_dim: int = 256) -> None:
        super().__init__()
        self.backbone = backbone
        channels = backbone.out_channels
        self.cam_head = nn.Conv2d(channels, num_classes, 1, bias=False)
        hidden = min(channels, 512)
        self.proj_head = nn.Sequential(
            nn.Conv2d(channels, hidden, 1), nn.ReLU(inplace=True), nn.Conv2d(hidden, proj_dim, 1)
        )
        nn.init.kaiming_normal_(self.cam_head.weight, nonlinearity="linear")

    @property
    def output_stride(self) -> int:
        return self.backbone.output_stride

    def forward(self, x: Tensor, with_proj: bool = True, with_features: bool = False) -> dict[str, Tensor]:
        features = self.backbone(x)
        cam = self.cam_head(features)
        out = {"cam": cam, "logits": cam.mean(dim=(2, 3))}
        if with_proj:
            out["proj"] = F.normalize(self.proj_head(features), dim=1)
        if with_features:
            out["features"] = features
        return out

    def param_groups(self) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
        """(backbone parameters, new-head parameters), trainable ones only: heads get a larger lr."""
        backbone = [p for p in self.backbone.parameters() if p.requires_grad]
        heads = [p for name, p in self.named_parameters() if not name.startswith("backbone.") and p.requires_grad]
        return backbone, heads
