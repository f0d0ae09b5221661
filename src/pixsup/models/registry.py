"""Backbones registered by name, built by ``create_model(name, ...)`` as in timm.

A backbone is an ``nn.Module`` mapping images (B, 3, H, W) to features
(B, out_channels, H / output_stride, W / output_stride), with attributes
``out_channels`` and ``output_stride``.
"""

from __future__ import annotations

from typing import Callable

from torch import nn

_BACKBONES: dict[str, Callable[..., nn.Module]] = {}


def register_backbone(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Decorator: register a backbone factory ``factory(pretrained: str) -> nn.Module`` under ``name``."""

    def wrap(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        if name in _BACKBONES:
            raise ValueError(f"backbone '{name}' is registered twice")
        _BACKBONES[name] = factory
        return factory

    return wrap


def available_backbones() -> list[str]:
    _import_builtin()
    return sorted(_BACKBONES)


def create_backbone(name: str, pretrained: str = "auto") -> nn.Module:
    """Build a registered backbone.

    Args:
        name: ``tiny``, ``resnet50``, ``resnet38`` or ``resnet101`` (or a user-registered name).
        pretrained: ``auto`` (ImageNet weights where the backbone has them, from
            the torch cache), ``none`` (random init) or a path to a weights file.
    """
    _import_builtin()
    if name not in _BACKBONES:
        raise ValueError(f"unknown backbone '{name}'; registered: {', '.join(sorted(_BACKBONES))}")
    return _BACKBONES[name](pretrained=pretrained)


def create_model(name: str, num_classes: int = 20, proj_dim: int = 256, pretrained: str = "auto") -> nn.Module:
    """Build a CAM network (backbone + CAM head + projection head)."""
    from .cam_net import CamNet

    return CamNet(create_backbone(name, pretrained=pretrained), num_classes=num_classes, proj_dim=proj_dim)


def _import_builtin() -> None:
    # The modules register themselves on import.
    from . import resnet38, resnet50, resnet101, tiny  # noqa: F401
