"""ResNet-50 backbone as IRN uses it: output stride 16, BatchNorm frozen, stem and layer1 frozen."""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import Tensor, nn

from .registry import register_backbone
from .weights import FrozenBatchNormBackbone, freeze, load_state, resolve_weights

# torchvision's IMAGENET1K_V1 file, the weights IRN-style CAM training starts from.
RESNET50_FILE = "resnet50-0676ba61.pth"


class ResNet50Backbone(FrozenBatchNormBackbone):
    out_channels = 2048
    output_stride = 16

    def __init__(self, weights: Path | None = None) -> None:
        super().__init__()
        # Dilate the last stage instead of striding it: stride 16 keeps CAMs less coarse.
        net = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, False, True])
        # The ImageNet classifier is not used; dropping it lets the file's fc.* be skipped.
        del net.fc
        if weights is not None:
            # The file uses torchvision's names: load before the layers are regrouped.
            load_state(net, weights, ignore_prefixes=("fc.",))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        freeze(self.stem)
        freeze(self.layer1)
        self.freeze_batchnorm()

    def forward(self, x: Tensor) -> Tensor:
        return self.layer4(self.layer3(self.layer2(self.layer1(self.stem(x)))))


@register_backbone("resnet50")
def resnet50(pretrained: str = "auto") -> nn.Module:
    path = resolve_weights(
        "resnet50", pretrained, cache_file=RESNET50_FILE,
        how_to_get="Download torchvision's ResNet50_Weights.IMAGENET1K_V1 file "
        f"({RESNET50_FILE}) on a machine with network access.",
    )
    return ResNet50Backbone(path)
