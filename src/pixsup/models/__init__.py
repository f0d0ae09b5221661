"""Networks: a backbone registry, the CAM network (MainNet/SupportNet body) and SupportNet wrappers."""

from .registry import available_backbones, create_backbone, create_model, register_backbone
from .cam_net import CamNet

__all__ = ["CamNet", "available_backbones", "create_backbone", "create_model", "register_backbone"]
