"""A small CNN for CPU demos and tests: five 3x3 conv layers, output stride 8.

Its receptive field is 47 px, about the size of a synthetic object: a field
covering the whole image (an earlier dilated version, 111 px) let every pixel
see every object and gave diffuse CAMs (seed mIoU 36 against 47; see
docs/design-study.md).
"""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from .weights import load_state, resolve_weights

# Where `pretrained: auto` finds this network's weights, relative to the working directory (the project
# root, where the workflow runs): the pretrain_backbone step writes it (pixsup.pretraining).
PRETRAINED_FILE = Path("results/pretrained/tiny_parts.pth")


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
    # No ImageNet weights exist for this network: its `auto` weights come from the generated source dataset.
    path = resolve_weights(
        "tiny",
        pretrained,
        cache_file=PRETRAINED_FILE.name,
        how_to_get="Run `snakemake --cores all pretrain_backbone` (or `python -m pixsup.steps.pretrain_backbone`).",
        directory=PRETRAINED_FILE.parent,
    )
    if path is not None:
        load_state(model, path)
    return model
