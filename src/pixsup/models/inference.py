"""Copies of a CAM network for forward passes only (CAM dumping, the frozen SupportNet)."""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn
from torch.fx.experimental.optimization import fuse as fuse_conv_bn
from torch.fx.proxy import TraceError

log = logging.getLogger(__name__)
BACKBONE_ATTRIBUTES = ("out_channels", "output_stride", "stage_channels")


def inference_model(model: nn.Module, device: torch.device | str | None = None) -> nn.Module:
    """A copy of a CAM network ready for inference: eval mode, channels_last, on ``device``
    (None: where ``model`` is).

    Each BatchNorm that follows a convolution is folded into it (``torch.fx``'s
    conv-bn fusion): the same CAMs up to float rounding (about 1e-6 relative),
    one pass over every feature map less. A backbone that cannot be traced
    keeps its BatchNorm layers.
    """
    model = copy.deepcopy(model).eval()
    try:
        fused = fuse_conv_bn(model.backbone)
    except TraceError as exc:
        log.info("BatchNorm not folded: the backbone cannot be traced (%s)", exc)
    else:
        # The traced graph keeps the layers, not the backbone's documented attributes.
        for name in BACKBONE_ATTRIBUTES:
            if hasattr(model.backbone, name):
                setattr(fused, name, getattr(model.backbone, name))
        model.backbone = fused
    return model.to(device, memory_format=torch.channels_last)
