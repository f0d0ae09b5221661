"""ResNet-101 backbone of DeepLab-v2: output stride 8 (layer3 and layer4 dilated), BatchNorm frozen."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .resnet50 import TorchvisionResNet
from .weights import resolve_weights

# torchvision's IMAGENET1K_V1 file.
RESNET101_FILE = "resnet101-63fe2227.pth"


class ResNet101Backbone(TorchvisionResNet):
    output_stride = 8

    def __init__(self, weights: Path | None = None) -> None:
        # Batches of a few 321 px crops give poor BatchNorm statistics: ImageNet's are kept.
        super().__init__("resnet101", [False, True, True], weights, frozen=("stem",))


def resnet101(pretrained: str = "auto") -> nn.Module:
    path = resolve_weights(
        "resnet101",
        pretrained,
        cache_file=RESNET101_FILE,
        how_to_get="Download torchvision's ResNet101_Weights.IMAGENET1K_V1 file "
        f"({RESNET101_FILE}) on a machine with network access.",
    )
    return ResNet101Backbone(path)
