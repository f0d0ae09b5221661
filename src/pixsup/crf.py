"""Fully connected CRF (Krähenbühl and Koltun) over an RGB image, through ``pydensecrf2``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .config import CrfConfig


def _crf(image: np.ndarray, unary: np.ndarray, cfg: CrfConfig) -> np.ndarray:
    import pydensecrf.densecrf as dcrf  # compiled extension: imported where it is used

    num_labels = unary.shape[0]
    height, width = image.shape[:2]
    crf = dcrf.DenseCRF2D(width, height, num_labels)
    crf.setUnaryEnergy(np.array(unary.reshape(num_labels, -1), dtype=np.float32, order="C"))
    crf.addPairwiseGaussian(sxy=cfg.gaussian_sxy, compat=cfg.gaussian_compat)
    crf.addPairwiseBilateral(
        sxy=cfg.bilateral_sxy,
        srgb=cfg.bilateral_srgb,
        rgbim=np.array(image, dtype=np.uint8, order="C"),
        compat=cfg.bilateral_compat,
    )
    marginals = np.array(crf.inference(cfg.iterations), dtype=np.float32)
    return marginals.reshape(num_labels, height, width)


def crf_from_labels(image: np.ndarray, labels: np.ndarray, num_labels: int, cfg: CrfConfig) -> np.ndarray:
    """Refine a hard label map (values 0..num_labels-1) with the CRF; returns the refined label map.

    Each pixel's own label gets probability ``cfg.gt_prob`` and the rest share the remainder.
    """
    if num_labels < 2:
        return np.zeros_like(labels)
    probs = np.full((num_labels,) + labels.shape, (1.0 - cfg.gt_prob) / (num_labels - 1), np.float32)
    np.put_along_axis(probs, labels[None].astype(np.int64), cfg.gt_prob, axis=0)
    return _crf(image, -np.log(probs), cfg).argmax(0).astype(labels.dtype)


def crf_from_probabilities(image: np.ndarray, probs: np.ndarray, cfg: CrfConfig) -> np.ndarray:
    """Refine class probabilities (L, H, W) with the CRF; returns the refined probabilities."""
    return _crf(image, -np.log(np.clip(probs, 1e-8, 1.0)), cfg)
