"""A small CNN for CPU demos and tests: five 3x3 conv layers, output stride 8.

Its receptive field is 47 px, about the size of a synthetic object: a field
covering the whole image (an earlier dilated version, 111 px) let every pixel
see every object and gave diffuse CAMs (seed mIoU 36 against 47; see
docs/design-study.md).
"""

from __future__ import annotations

from torch import Tensor, nn

from .weights import load_state, resolve_weights


def _conv(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class TinyBackbone(nn.Module):
    out_channels = 128
    output_stride = 8
    stage_channels = (32, 64, 96, 128, 128)

    def __init__(self) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            _conv(3, 32, stride=2),
            _conv(32, 64, stride=2),
            _conv(64, 96, stride=2),
            _conv(96, 128),
            _conv(128, 128),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)

    def forward_stages(self, x: Tensor) -> list[Tensor]:
        """The output of every layer (strides 2, 4, 8, 8, 8): the multi-level features IRN's branch reads."""
        stages = []
        for layer in self.layers:
            x = layer(x)
            stages.append(x)
        return stages


def tiny(pretrained: str = "auto") -> nn.Module:
    model = TinyBackbone()
    # There are no ImageNet weights for this network: `auto` means random init.
    path = resolve_weights("tiny", pretrained, cache_file=None, how_to_get="")
    if path is not None:
        load_state(model, path)
    return model
