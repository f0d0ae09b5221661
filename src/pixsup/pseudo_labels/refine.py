"""Per-image refinements of CAMs: confident labels (IRN's ``cam_to_ir_label``) and full pseudo masks.

Every function takes one image (uint8 H x W x 3) and its CAM file's arrays
(``keys``: class ids, ``high_res``: (K, H, W), ``cam``: (K, h, w) on the stride-4
grid, all normalised to [0, 1]) and returns a uint8 label map of VOC class ids
(0 background, 255 unknown where stated).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..crf import crf_from_labels
from ..data.transforms import shrink_to_max_side
from .random_walk import random_walk

if TYPE_CHECKING:
    from ..config import CrfConfig, PseudoLabelsConfig

IGNORE = 255


def working_size(
    image: np.ndarray, cams: dict[str, np.ndarray], max_side: int
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """The image and its CAMs with the long side at most ``max_side`` (``pseudo_labels.max_side``): a
    refinement's memory (the dense CRF's above all) then does not grow with the photo. Smaller images
    come back as they are."""
    small = shrink_to_max_side(image, max_side)
    if small.shape == image.shape:
        return image, cams
    height, width = small.shape[:2]
    stride = round(image.shape[0] / cams["cam"].shape[1])  # the CAM grid's stride (cam_infer.cam_stride)

    def resized(maps: np.ndarray, size: tuple[int, int]) -> np.ndarray:
        if len(maps) == 0:
            return np.zeros((0, *size), np.float32)
        tensor = torch.from_numpy(maps.astype(np.float32))[None]
        return F.interpolate(tensor, size=size, mode="bilinear", align_corners=False)[0].numpy()

    low_size = (-(-height // stride), -(-width // stride))
    return small, {
        **cams,
        "high_res": resized(cams["high_res"], (height, width)),
        "cam": resized(cams["cam"], low_size),
    }


def enlarge_labels(labels: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """A label map brought back to the image's ``(height, width)`` (nearest neighbour)."""
    if labels.shape == tuple(size):
        return labels
    return np.asarray(Image.fromarray(labels).resize((size[1], size[0]), Image.Resampling.NEAREST))


def _label_ids(keys: np.ndarray) -> np.ndarray:
    """Index -> VOC id: index 0 is background, index k is ``keys[k - 1]``."""
    return np.concatenate([[0], keys]).astype(np.uint8)


def threshold_labels(scores: np.ndarray, keys: np.ndarray, bg_score: float) -> np.ndarray:
    """Strongest class per pixel, or background where no class beats ``bg_score``."""
    if len(keys) == 0:
        return np.zeros(scores.shape[1:], np.uint8)
    index = np.concatenate([np.full((1,) + scores.shape[1:], bg_score, np.float32), scores.astype(np.float32)]).argmax(
        0
    )
    return _label_ids(keys)[index]


def _crf_labels(image: np.ndarray, scores: np.ndarray, keys: np.ndarray, bg_score: float, crf: CrfConfig) -> np.ndarray:
    if len(keys) == 0:
        return np.zeros(image.shape[:2], np.uint8)
    index = np.concatenate([np.full((1,) + scores.shape[1:], bg_score, np.float32), scores.astype(np.float32)]).argmax(
        0
    )
    return _label_ids(keys)[crf_from_labels(image, index, len(keys) + 1, crf)]


def confident_labels(image: np.ndarray, cams: dict[str, np.ndarray], cfg: PseudoLabelsConfig) -> np.ndarray:
    """Confident foreground (CAM above ``conf_fg_threshold``, CRF-refined), confident background
    (every CAM below ``conf_bg_threshold``, CRF-refined) and 255 in between."""
    high_res = cams["high_res"]
    foreground = _crf_labels(image, high_res, cams["keys"], cfg.conf_fg_threshold, cfg.crf)
    background = _crf_labels(image, high_res, cams["keys"], cfg.conf_bg_threshold, cfg.crf)
    labels = foreground.copy()
    labels[foreground == 0] = IGNORE
    labels[(foreground == 0) & (background == 0)] = 0
    return labels


def cam_mask(image: np.ndarray, cams: dict[str, np.ndarray], cfg: PseudoLabelsConfig) -> np.ndarray:
    """``cam``: the thresholded CAMs, nothing else."""
    return threshold_labels(cams["high_res"], cams["keys"], cfg.bg_threshold)


def crf_mask(image: np.ndarray, cams: dict[str, np.ndarray], cfg: PseudoLabelsConfig) -> np.ndarray:
    """``crf``: the thresholded CAMs refined by the dense CRF."""
    return _crf_labels(image, cams["high_res"], cams["keys"], cfg.bg_threshold, cfg.crf)


def irn_mask(
    image: np.ndarray, cams: dict[str, np.ndarray], boundary: torch.Tensor, cfg: PseudoLabelsConfig
) -> np.ndarray:
    """``irn``: stride-4 CAMs, damped on boundaries, propagated by the random walk, upsampled,
    divided by their maximum and thresholded at ``bg_threshold``."""
    height, width = image.shape[:2]
    keys = cams["keys"]
    if len(keys) == 0:
        return np.zeros((height, width), np.uint8)
    low = torch.from_numpy(cams["cam"].astype(np.float32))
    if low.shape[1:] != boundary.shape:
        raise ValueError(
            f"CAM grid {tuple(low.shape[1:])} differs from the boundary grid {tuple(boundary.shape)}: "
            "the irn method needs cam_infer.cam_stride 4"
        )
    walked = random_walk(low * (1.0 - boundary), boundary, cfg.irn.radius, cfg.irn.beta, cfg.irn.exp_times)
    up = F.interpolate(walked[None], scale_factor=4, mode="bilinear", align_corners=False)[0, :, :height, :width]
    up = up / up.max().clamp(min=1e-5)
    return threshold_labels(up.numpy(), keys, cfg.bg_threshold)
