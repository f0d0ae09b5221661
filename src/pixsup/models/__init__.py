"""Networks: the backbone table and the heads put on a backbone (CAM, segmentation, boundary).

``create_model(backbone, network, ...)`` builds any of them, as timm's ``create_model`` does:
the backbone by name from :data:`~pixsup.models.backbones.BACKBONES`, or an already built
one (a trained CAM network's, for ``pretrained: cam``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .backbones import BACKBONES, available_backbones, create_backbone, register_backbone
from .boundary_net import BoundaryNet
from .cam_net import CamNet
from .segnet import SegNet

NETWORKS: dict[str, type[nn.Module]] = {
    "cam": CamNet,  # MainNet and SupportNet: CAM head + projection head
    "segmentation": SegNet,  # DeepLab-v2: ASPP
    "boundary": BoundaryNet,  # IRN's class-boundary branch on a frozen backbone
}


def create_model(
    backbone: str | nn.Module, network: str = "cam", pretrained: str = "auto", **options: Any
) -> nn.Module:
    """The ``network`` of :data:`NETWORKS` on ``backbone`` (a table name, built with ``pretrained``, or a module).

    ``options`` go to the network: ``num_classes``, ``proj_dim`` (cam); ``rates``,
    ``num_classes`` (segmentation); ``width`` (boundary).
    """
    if network not in NETWORKS:
        raise ValueError(f"unknown network '{network}' ({' | '.join(NETWORKS)})")
    body = backbone if isinstance(backbone, nn.Module) else create_backbone(backbone, pretrained=pretrained)
    return NETWORKS[network](body, **options)


__all__ = [
    "BACKBONES",
    "NETWORKS",
    "BoundaryNet",
    "CamNet",
    "SegNet",
    "available_backbones",
    "create_backbone",
    "create_model",
    "register_backbone",
]
