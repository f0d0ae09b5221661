"""Torch datasets over a VOC folder: CAM training (augmented), CAM inference (raw), and images
paired with per-pixel labels from a folder of PNGs (IRN and segmentation training)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import AugmentConfig
from .label_folders import read_label_png, require_finished
from .transforms import Compose, build_train_transform, normalize_image
from .validate import check_item
from .voc import DataError, VocIndex, read_split


class _VocSplit(Dataset):
    """The ids of one split, each checked with :func:`check_item` the first time it is loaded."""

    def __init__(self, root: str | os.PathLike, split: str, cls_labels: dict[str, np.ndarray] | None = None) -> None:
        self.index = VocIndex(root, cls_labels)
        self.split = split
        self.ids = read_split(root, split)
        # One flag per item in shared memory: DataLoader workers, new processes at every epoch
        # unless persistent, see each other's checks, so an item is checked once per run.
        self._checked = torch.zeros(len(self.ids), dtype=torch.bool).share_memory_()

    def __len__(self) -> int:
        return len(self.ids)

    def identity(self) -> dict[str, object]:
        """What the dataset is, for a resume checkpoint: its folder, split and ids (count and digest)."""
        digest = hashlib.sha256("\n".join(self.ids).encode()).hexdigest()
        return {
            "root": str(self.index.root.resolve()),
            "split": self.split,
            "images": len(self.ids),
            "ids_sha256": digest,
        }

    def _load_image(self, i: int) -> tuple[str, np.ndarray]:
        """The id and decoded image of item ``i``; the first time, the item is checked too, on the
        image already decoded."""
        image_id = self.ids[i]
        if self._checked[i]:
            return image_id, self.index.load_image(image_id)
        try:
            image = self.index.load_image(image_id)
        except DataError:
            image = None  # check_item reports it with the item's other problems
        problems = check_item(self.index, image_id, require_mask=False, image=image)
        if problems:
            raise DataError("; ".join(problems))
        self._checked[i] = True
        return image_id, image


class CamTrainDataset(_VocSplit):
    """Augmented images with image-level labels for training the classification network.

    Item ``i`` of epoch ``e`` is augmented with ``np.random.default_rng([seed, e, i])``,
    so it is identical across runs, worker counts and machines.

    Args:
        root: The VOC2012 folder.
        split: The list to read (e.g. ``train_aug``).
        augment_cfg: The ``cam_train.augment`` section.
        seed: Augmentation seed (non-negative).
        cls_labels: Optional labels from :func:`~pixsup.data.voc.load_cls_labels_npy`.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str,
        augment_cfg: AugmentConfig,
        seed: int,
        cls_labels: dict[str, np.ndarray] | None = None,
    ) -> None:
        super().__init__(root, split, cls_labels)
        self.transform = build_train_transform(augment_cfg)
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch's augmentation; call before creating that epoch's DataLoader iterator
        (workers copy the dataset when the iterator starts, so not with ``persistent_workers``)."""
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        """``{"image": float32 3 x C x C normalised tensor, "label": float32 (20,) tensor, "id": str}``."""
        image_id, image = self._load_image(i)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, _ = self.transform(image, None, rng)
        return {
            "image": normalize_image(image),
            "label": torch.from_numpy(self.index.image_labels(image_id)),
            "id": image_id,
        }


class CamInferDataset(_VocSplit):
    """Raw images with image-level labels for CAM inference (no transform; batch size 1).

    Args:
        root: The VOC2012 folder.
        split: The list to read.
        cls_labels: Optional labels from :func:`~pixsup.data.voc.load_cls_labels_npy`.
    """

    def __getitem__(self, i: int) -> dict[str, Any]:
        """``{"image": uint8 H x W x 3 numpy, "label": float32 (20,) numpy, "id": str}``."""
        image_id, image = self._load_image(i)
        return {
            "image": image,
            "label": self.index.image_labels(image_id),
            "id": image_id,
        }


class LabelFolderDataset(_VocSplit):
    """Augmented images with per-pixel labels read from ``label_dir/<id>.png`` (class ids, 255 unknown).

    Item ``i`` of epoch ``e`` is augmented with ``np.random.default_rng([seed, e, i])``.

    Raises:
        DataError: ``label_dir`` is unfinished, or lacks a PNG for some id of the split (the message names
            the folder and ids).
    """

    def __init__(
        self, root: str | os.PathLike, split: str, label_dir: str | os.PathLike, transform: Compose, seed: int
    ) -> None:
        super().__init__(root, split)
        self.label_dir = Path(label_dir)
        require_finished(self.label_dir)
        missing = [i for i in self.ids if not (self.label_dir / f"{i}.png").is_file()]
        if missing:
            raise DataError(
                f"{self.label_dir}: no label PNG for {len(missing)} ids of '{split}', e.g. {', '.join(missing[:5])}"
            )
        self.transform = transform
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __getitem__(self, i: int) -> dict[str, Any]:
        """``{"image": float32 3 x C x C tensor, "target": int64 C x C tensor, "id": str}``."""
        image_id, image = self._load_image(i)
        label = read_label_png(self.label_dir / f"{image_id}.png")
        if label.shape != image.shape[:2]:
            raise DataError(
                f"{self.label_dir / image_id}.png: size {label.shape} differs from the image's {image.shape[:2]}"
            )
        rng = np.random.default_rng([self.seed, self.epoch, i])
        image, label = self.transform(image, label, rng)
        return {"image": normalize_image(image), "target": torch.from_numpy(label.astype(np.int64)), "id": image_id}


def single_collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    """Collate for batch size 1 that keeps the item as is (images differ in size)."""
    return batch[0]
