"""ResNet-50 backbone as IRN uses it: output stride 16, BatchNorm frozen, stem and layer1 frozen."""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import Tensor, nn

from .weights import FrozenBatchNormBackbone, freeze, load_state, resolve_weights

# torchvision's IMAGENET1K_V1 file, the weights IRN-style CAM training starts from.
RESNET50_FILE = "resnet50-0676ba61.pth"


class TorchvisionResNet(FrozenBatchNormBackbone):
    """A torchvision ResNet trunk (no classifier), stages ``layer1..layer4``, BatchNorm frozen.

    Args:
        arch: torchvision constructor name (``resnet50``, ``resnet101``).
        dilate: ``replace_stride_with_dilation`` for layer2..layer4.
        weights: ImageNet weights file (torchvision names), or None for random init.
        frozen: modules kept fixed besides BatchNorm (``stem``, ``layer1``).
    """

    out_channels = 2048
    stage_channels = (256, 512, 1024, 2048)

    def __init__(self, arch: str, dilate: list[bool], weights: Path | None, frozen: tuple[str, ...]) -> None:
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None, replace_stride_with_dilation=dilate)
        # The ImageNet classifier is not used; dropping it lets the file's fc.* be skipped.
        del net.fc
        if weights is not None:
            # The file uses torchvision's names: load before the layers are regrouped.
            load_state(net, weights, ignore_prefixes=("fc.",))
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        for name in frozen:
            freeze(getattr(self, name))
        self.freeze_batchnorm()

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of layer1..layer4."""
        stages = [self.layer1(self.stem(x))]
        for layer in (self.layer2, self.layer3, self.layer4):
            stages.append(layer(stages[-1]))
        return stages


class ResNet50Backbone(TorchvisionResNet):
    output_stride = 16

    def __init__(self, weights: Path | None = None) -> None:
        # Dilate the last stage instead of striding it: stride 16 keeps CAMs less coarse.
        super().__init__("resnet50", [False, False, True], weights, frozen=("stem", "layer1"))


def resnet50(pretrained: str = "auto") -> nn.Module:
    path = resolve_weights(
        "resnet50",
        pretrained,
        cache_file=RESNET50_FILE,
        how_to_get="Download torchvision's ResNet50_Weights.IMAGENET1K_V1 file "
        f"({RESNET50_FILE}) on a machine with network access.",
    )
    return ResNet50Backbone(path)
