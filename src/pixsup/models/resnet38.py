"""The wide ResNet-38 of the AffinityNet/SEAM lineage: output stride 8, 4096 output channels.

Pre-activation residual blocks; the stem conv keeps full resolution and
stages b2, b3, b4 each halve it; b5 uses dilation 2 and the bottleneck stages
b6/b7 dilation 4. Parameter names follow
the converted MXNet ImageNet weights that those codebases distribute
(``conv1a``, ``b2``, ``b2_1``, ..., ``bn7``; inside a block ``bn_branch2a``,
``conv_branch2a``, ``bn_branch2b1``, ``conv_branch2b1``, ``conv_branch1``), so a
user's converted ``.pth`` loads directly. The stem and stage b2 are frozen and
BatchNorm statistics are fixed, as in those codebases.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from .weights import FrozenBatchNormBackbone, freeze, load_state, resolve_weights


class _PreActBlock(nn.Module):
    """BN-ReLU-conv3x3-BN-ReLU-conv3x3 with a 1x1 projection shortcut when the shape changes."""

    def __init__(
        self, cin: int, mid: int, cout: int, stride: int = 1, first_dilation: int | None = None, dilation: int = 1
    ) -> None:
        super().__init__()
        first_dilation = dilation if first_dilation is None else first_dilation
        self.same_shape = cin == cout and stride == 1
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, mid, 3, stride, padding=first_dilation, dilation=first_dilation, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(mid)
        self.conv_branch2b1 = nn.Conv2d(mid, cout, 3, padding=dilation, dilation=dilation, bias=False)
        if not self.same_shape:
            self.conv_branch1 = nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn_branch2a(x))
        shortcut = x if self.same_shape else self.conv_branch1(pre)
        out = self.conv_branch2a(pre)
        out = self.conv_branch2b1(F.relu(self.bn_branch2b1(out)))
        return shortcut + out


class _PreActBottleneck(nn.Module):
    """Pre-activation bottleneck (1x1, dilated 3x3, 1x1) with dropout, for the widest stages."""

    def __init__(self, cin: int, cout: int, dilation: int, dropout: float) -> None:
        super().__init__()
        self.bn_branch2a = nn.BatchNorm2d(cin)
        self.conv_branch2a = nn.Conv2d(cin, cout // 4, 1, bias=False)
        self.bn_branch2b1 = nn.BatchNorm2d(cout // 4)
        self.dropout_2b1 = nn.Dropout2d(dropout)
        self.conv_branch2b1 = nn.Conv2d(cout // 4, cout // 2, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn_branch2b2 = nn.BatchNorm2d(cout // 2)
        self.dropout_2b2 = nn.Dropout2d(dropout)
        self.conv_branch2b2 = nn.Conv2d(cout // 2, cout, 1, bias=False)
        self.conv_branch1 = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        pre = F.relu(self.bn_branch2a(x))
        shortcut = self.conv_branch1(pre)
        out = self.conv_branch2a(pre)
        out = self.conv_branch2b1(self.dropout_2b1(F.relu(self.bn_branch2b1(out))))
        out = self.conv_branch2b2(self.dropout_2b2(F.relu(self.bn_branch2b2(out))))
        return shortcut + out


class ResNet38Backbone(FrozenBatchNormBackbone):
    out_channels = 4096
    output_stride = 8
    stage_channels = (128, 256, 512, 1024, 4096)

    def __init__(self, weights: Path | None = None) -> None:
        super().__init__()
        self.conv1a = nn.Conv2d(3, 64, 3, padding=1, bias=False)
        self.b2 = _PreActBlock(64, 128, 128, stride=2)
        self.b2_1 = _PreActBlock(128, 128, 128)
        self.b2_2 = _PreActBlock(128, 128, 128)
        self.b3 = _PreActBlock(128, 256, 256, stride=2)
        self.b3_1 = _PreActBlock(256, 256, 256)
        self.b3_2 = _PreActBlock(256, 256, 256)
        self.b4 = _PreActBlock(256, 512, 512, stride=2)
        for i in range(1, 6):
            setattr(self, f"b4_{i}", _PreActBlock(512, 512, 512))
        self.b5 = _PreActBlock(512, 512, 1024, first_dilation=1, dilation=2)
        self.b5_1 = _PreActBlock(1024, 512, 1024, dilation=2)
        self.b5_2 = _PreActBlock(1024, 512, 1024, dilation=2)
        self.b6 = _PreActBottleneck(1024, 2048, dilation=4, dropout=0.3)
        self.b7 = _PreActBottleneck(2048, 4096, dilation=4, dropout=0.5)
        self.bn7 = nn.BatchNorm2d(4096)
        self._stages = (
            ["b2", "b2_1", "b2_2", "b3", "b3_1", "b3_2", "b4"]
            + [f"b4_{i}" for i in range(1, 6)]
            + ["b5", "b5_1", "b5_2", "b6", "b7"]
        )
        if weights is not None:
            # Converted ImageNet files also carry the classifier (fc8) and sometimes
            # a final stage; only the trunk is needed.
            load_state(self, weights, ignore_prefixes=("fc8", "fc."))
        for module in (self.conv1a, self.b2, self.b2_1, self.b2_2):
            freeze(module)
        self.freeze_batchnorm()

    def forward(self, x: Tensor) -> Tensor:
        return self.forward_stages(x)[-1]

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """Outputs of the b2, b3, b4, b5 groups and the final b7 + bn7 (strides 2, 4, 8, 8, 8)."""
        x = self.conv1a(x)
        stages = []
        for name in self._stages:
            x = getattr(self, name)(x)
            if name in ("b2_2", "b3_2", "b4_5", "b5_2"):
                stages.append(x)
        stages.append(F.relu(self.bn7(x)))
        return stages


def resnet38(pretrained: str = "auto") -> nn.Module:
    # No torchvision download exists: `auto` requires the converted file in the torch cache.
    path = resolve_weights(
        "resnet38",
        pretrained,
        cache_file="resnet38d_ilsvrc.pth",
        how_to_get="Convert the MXNet ImageNet weights of ResNet-38 "
        "(ilsvrc-cls_rna-a1_cls1000_ep-0001.params) to a PyTorch state dict with the parameter "
        "names used by AffinityNet/SEAM.",
    )
    return ResNet38Backbone(path)
