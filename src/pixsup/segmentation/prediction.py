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
from ..data.transforms import normalize_image
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
    progress: bool = True,
) -> None:
    """``<out>/<id>.png`` (VOC palette, the image's size) for every id, the dense CRF applied when ``crf`` is
    given, then ``index.json`` with the ids, the prediction settings and ``manifest``."""
    index = VocIndex(root)
    out = Path(out)
    start_label_folder(out)

    def work(image_id: str) -> str:
        image = index.load_image(image_id)
        probs = predict_probs(network, image, scales, flip, device)
        if crf is not None:
            probs = crf_from_probabilities(image, probs, crf)
        write_label_png(out / f"{image_id}.png", probs.argmax(0).astype("uint8"))
        return image_id

    for _ in map_ids(work, ids, 1, f"predict {len(ids)} images", progress):
        pass
    write_manifest(out, ids, scales=list(scales), flip=flip, crf=crf is not None, **manifest)


def write_submission_tar(pred_dir: str | os.PathLike, ids: list[str], tar_path: str | os.PathLike) -> None:
    """A tar of ``<id>.png`` under ``results/VOC2012/Segmentation/comp6_test_cls/``, ready to upload."""
    with atomic_path(tar_path) as tmp, tarfile.open(tmp, "w") as tar:
        for image_id in ids:
            tar.add(Path(pred_dir) / f"{image_id}.png", arcname=f"{SUBMISSION_DIR}/{image_id}.png")
