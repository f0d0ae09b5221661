"""ResNet-50 backbone as IRN's CAM network builds it: strides (2, 2, 2, 1), no dilation (output stride 16),
stem, layer1 and layer2 frozen (IRN detaches layer2's output), BatchNorm statistics fixed.

One departure: IRN's ``FixedBatchNorm`` fixes the statistics but still trains the BatchNorm scale and
shift of layer3 and layer4; here every BatchNorm is fixed whole (torchvision's FrozenBatchNorm2d), as
for the other backbones (docs/conventions.md)."""

from __future__ import annotations

from pathlib import Path

import torchvision
from torch import Tensor, nn

from .weights import FrozenBatchNormBackbone, freeze, load_state, resolve_weights

# torchvision's ImageNet weights (IMAGENET1K_V1); IRN loads them from the older file name resnet50-19c8e357.pth.
RESNET50_FILE = "resnet50-0676ba61.pth"


class TorchvisionResNet(FrozenBatchNormBackbone):
    """A torchvision ResNet trunk (no classifier), stages ``stem, layer1..layer4``, BatchNorm frozen.

    Args:
        arch: torchvision constructor name (``resnet50``, ``resnet101``).
        dilate: ``replace_stride_with_dilation`` for layer2..layer4.
        weights: ImageNet weights file (torchvision names), or None for random init.
        frozen: modules kept fixed besides BatchNorm (``stem``, ``layer1``).
        layer4_stride: 1 gives layer4 stride 1 *without* dilation (IRN's ``strides=(2, 2, 2, 1)``):
            the stride of its first block's 3x3 conv and of its shortcut's 1x1 conv set to 1.
    """

    out_channels = 2048
    # The stem's output (after max pooling, stride 4) is IRN's first boundary level.
    stage_channels = (64, 256, 512, 1024, 2048)

    def __init__(
        self, arch: str, dilate: list[bool], weights: Path | None, frozen: tuple[str, ...], layer4_stride: int = 2
    ) -> None:
        super().__init__()
        net = getattr(torchvision.models, arch)(weights=None, replace_stride_with_dilation=dilate)
        if layer4_stride == 1 and not dilate[2]:
            # Only strides change: the parameters (and their names) stay torchvision's.
            first = net.layer4[0]
            first.conv2.stride = (1, 1)
            first.downsample[0].stride = (1, 1)
        elif layer4_stride not in (1, 2):
            raise ValueError(f"layer4_stride must be 1 or 2, not {layer4_stride}")
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
        """Outputs of the stem (max pooling included) and of layer1..layer4."""
        stages = [self.stem(x)]
        for layer in (self.layer1, self.layer2, self.layer3, self.layer4):
            stages.append(layer(stages[-1]))
        return stages


class ResNet50Backbone(TorchvisionResNet):
    """IRN's ResNet-50 (``resnet50(strides=(2, 2, 2, 1))``): layer4 keeps stride 1 and dilation 1."""

    output_stride = 16

    def __init__(self, weights: Path | None = None) -> None:
        frozen = ("stem", "layer1", "layer2")  # IRN: x = self.stage2(x).detach()
        super().__init__("resnet50", [False, False, False], weights, frozen=frozen, layer4_stride=1)


def resnet50(pretrained: str = "auto") -> nn.Module:
    """IRN's ResNet-50 CAM backbone."""
    path = resolve_weights(
        "resnet50",
        pretrained,
        cache_file=RESNET50_FILE,
        how_to_get="Download torchvision's ResNet50_Weights.IMAGENET1K_V1 file "
        f"({RESNET50_FILE}) on a machine with network access.",
    )
    return ResNet50Backbone(path)
