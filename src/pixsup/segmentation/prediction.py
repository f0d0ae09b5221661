"""Segmentation predictions: single- and multi-scale probabilities, folders of label PNGs, the test submission."""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import CrfConfig
from ..crf import crf_from_probabilities
from ..data.label_folders import start_label_folder, write_label_png, write_manifest
from ..data.transforms import normalize_image, shrink_to_max_side
from ..data.voc import VocIndex
from ..files import atomic_path
from ..models import SegNet
from ..runtime.device import autocast_for
from ..runtime.parallel import map_ids

# Where the evaluation server expects the PNGs of the test submission.
SUBMISSION_DIR = "results/VOC2012/Segmentation/comp6_test_cls"


@torch.no_grad()
def predict_probs(
    model: SegNet, image: np.ndarray, scales: Sequence[float], flip: bool, device: torch.device
) -> np.ndarray:
    """Class probabilities (21, H, W) of one uint8 image: softmax averaged over scales (and mirrors)."""
    x = normalize_image(image).unsqueeze(0).to(device)
    height, width = image.shape[:2]
    total = torch.zeros(1, model.aspp[0].out_channels, height, width, device=device)
    count = 0
    amp = autocast_for(device)
    for scale in scales:
        size = (max(1, round(height * scale)), max(1, round(width * scale)))
        scaled = F.interpolate(x, size=size, mode="bilinear", align_corners=False) if scale != 1.0 else x
        batch = torch.cat([scaled, scaled.flip(-1)]) if flip else scaled
        with amp:
            logits = model(batch).float()
        if flip:
            logits = torch.stack([logits[0], logits[1].flip(-1)])
        probs = F.interpolate(logits.softmax(1), size=(height, width), mode="bilinear", align_corners=False)
        total += probs.sum(0, keepdim=True)
        count += len(probs)
    return (total / count)[0].cpu().numpy()


def labels_at_size(probs: np.ndarray, size: tuple[int, int], band_rows: int = 128) -> np.ndarray:
    """uint8 argmax of ``probs`` (C, h, w) enlarged bilinearly (align_corners=False) to ``size``, computed
    ``band_rows`` output rows at a time: memory is C x band_rows x width, never C x height x width."""
    height, width = size
    source = torch.from_numpy(np.ascontiguousarray(probs, dtype=np.float32))
    if tuple(source.shape[1:]) == (height, width):
        return source.argmax(0).to(torch.uint8).numpy()
    labels = np.empty((height, width), np.uint8)
    # Each output row y samples source row (y + 0.5) * h / height - 0.5, clamped as interpolate does.
    rows = ((torch.arange(height, dtype=torch.float64) + 0.5) * (source.shape[1] / height) - 0.5).clamp(min=0)
    top = rows.floor().long().clamp(max=source.shape[1] - 1)
    bottom = (top + 1).clamp(max=source.shape[1] - 1)
    weight = (rows - top).float()[:, None]
    for start in range(0, height, band_rows):
        band = slice(start, min(start + band_rows, height))
        mixed = source[:, top[band]] * (1 - weight[band]) + source[:, bottom[band]] * weight[band]
        # Rows are already at their output positions: interpolate now only resamples the columns.
        wide = F.interpolate(mixed[None], size=(mixed.shape[1], width), mode="bilinear", align_corners=False)
        labels[band] = wide[0].argmax(0).to(torch.uint8).numpy()
    return labels


def predict_folder(
    network: SegNet,
    root: str | os.PathLike,
    ids: list[str],
    out: str | os.PathLike,
    scales: Sequence[float],
    flip: bool,
    crf: CrfConfig | None,
    device: torch.device,
    manifest: dict[str, object],
    max_side: int,
    progress: bool = True,
) -> None:
    """``<out>/<id>.png`` (VOC palette, the image's size) for every id, the dense CRF applied when ``crf`` is
    given, then ``index.json`` with the ids, the prediction settings and ``manifest``. An image whose long
    side exceeds ``max_side`` is predicted (and refined) shrunk to it and its probabilities enlarged back."""
    index = VocIndex(root)
    out = Path(out)
    start_label_folder(out)

    def work(image_id: str) -> str:
        image = index.load_image(image_id)
        work_image = shrink_to_max_side(image, max_side)
        probs = predict_probs(network, work_image, scales, flip, device)
        if crf is not None:
            probs = crf_from_probabilities(work_image, probs, crf)
        write_label_png(out / f"{image_id}.png", labels_at_size(probs, image.shape[:2]))
        return image_id

    for _ in map_ids(work, ids, 1, f"predict {len(ids)} images", progress):
        pass
    write_manifest(out, ids, scales=list(scales), flip=flip, crf=crf is not None, max_side=max_side, **manifest)


def write_submission_tar(pred_dir: str | os.PathLike, ids: list[str], tar_path: str | os.PathLike) -> None:
    """A tar of ``<id>.png`` under ``results/VOC2012/Segmentation/comp6_test_cls/``, ready to upload."""
    with atomic_path(tar_path) as tmp, tarfile.open(tmp, "w") as tar:
        for image_id in ids:
            tar.add(Path(pred_dir) / f"{image_id}.png", arcname=f"{SUBMISSION_DIR}/{image_id}.png")
