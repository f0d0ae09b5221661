"""The backbone table: every network of :mod:`pixsup.models` is a head on one of these, built by name.

A backbone is an ``nn.Module`` mapping images (B, 3, H, W) to features
(B, out_channels, H / output_stride, W / output_stride), with attributes
``out_channels``, ``output_stride``, ``stage_channels`` and ``forward_stages``
(each stage's output, for IRN's boundary branch). A factory takes ``pretrained``:
``auto`` (ImageNet weights where the backbone has them, from the torch cache),
``none`` (random init) or a path to a weights file.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from ..config import KNOWN_BACKBONES
from .resnet38 import resnet38
from .resnet50 import resnet50
from .resnet101 import resnet101
from .tiny import tiny

BackboneFactory = Callable[..., nn.Module]

BACKBONES: dict[str, BackboneFactory] = {
    "tiny": tiny,
    "resnet50": resnet50,
    "resnet38": resnet38,
    "resnet101": resnet101,
}


def register_backbone(name: str) -> Callable[[BackboneFactory], BackboneFactory]:
    """Decorator adding a factory ``factory(pretrained: str) -> nn.Module`` of one's own to the table."""

    def add(factory: BackboneFactory) -> BackboneFactory:
        if name in BACKBONES:
            raise ValueError(f"backbone '{name}' is registered twice")
        BACKBONES[name] = factory
        KNOWN_BACKBONES.append(name)  # the params schema accepts it from now on
        return factory

    return add


def available_backbones() -> list[str]:
    return sorted(BACKBONES)


def create_backbone(name: str, pretrained: str = "auto") -> nn.Module:
    """Build the backbone ``name`` of the table (``tiny``, ``resnet50``, ``resnet38``, ``resnet101``, or one
    registered by :func:`register_backbone`)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; registered: {', '.join(available_backbones())}")
    return BACKBONES[name](pretrained=pretrained)
