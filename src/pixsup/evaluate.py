"""Seed evaluation: CAM files of a split against its ground-truth masks."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from tqdm import tqdm

from .cams import load_cam_file
from .data.voc import DataError, VocIndex, read_split
from .metrics import ThresholdSweep


def evaluate_cams(cams_dir: str | Path, root: str | Path, split: str, thresholds: Sequence[float],
                  progress: bool = True) -> dict:
    """Threshold-sweep scores (see ``ThresholdSweep.result``) over every id of ``split``."""
    cams_dir = Path(cams_dir)
    index = VocIndex(root)
    ids = read_split(root, split)
    sweep = ThresholdSweep(thresholds)
    for image_id in tqdm(ids, desc=f"eval_cams {split}", disable=not progress):
        mask = index.load_mask(image_id)
        if mask is None:
            raise DataError(f"{index.mask_candidates(image_id)[0]}: no ground-truth mask for '{image_id}'")
        cams = load_cam_file(cams_dir / f"{image_id}.npz", image_size=mask.shape)
        sweep.add(cams["high_res"], cams["keys"], mask)
    result = sweep.result()
    result["images"] = len(ids)
    result["split"] = split
    return result
