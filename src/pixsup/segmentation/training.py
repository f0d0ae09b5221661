"""DeepLab-v2 (:class:`~pixsup.models.SegNet`) trained on pseudo masks.

Checkpoints (``pixsup.segnet/1``) hold the params and weights. The loop is
:func:`pixsup.engine.fit`'s: resumable, stoppable after an epoch, several processes,
bf16 autocast and channels_last on CUDA.
"""

from __future__ import annotations

import os
from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import load_cam_backbone, load_weights, read_trained, save_trained
from ..config import SegTrainConfig
from ..data.datasets import LabelFolderDataset
from ..data.transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomScale
from ..data.voc_format import IGNORE_INDEX
from ..engine import TrainingTask, fit, training_ranks
from ..models import SegNet, create_model

FORMAT = "pixsup.segnet/1"
LOSS_COLUMNS = ("loss",)


def build_segnet(
    cfg: SegTrainConfig, pretrained: str | None = None, cam_checkpoint: str | os.PathLike | None = None
) -> SegNet:
    """The network of ``cfg``; ``pretrained: cam`` starts from the backbone of the CAM network checkpoint."""
    pretrained = cfg.pretrained if pretrained is None else pretrained
    rates = tuple(cfg.aspp_rates)
    if pretrained == "cam":
        return create_model(load_cam_backbone(cam_checkpoint, cfg.backbone, "seg_train"), "segmentation", rates=rates)
    return create_model(cfg.backbone, "segmentation", pretrained=pretrained, rates=rates)


def train_seg(
    cfg: SegTrainConfig,
    root: str | os.PathLike,
    split: str,
    masks_dir: str | os.PathLike,
    out: str | os.PathLike,
    losses_csv: str | os.PathLike | None = None,
    device: str = "auto",
    cam_checkpoint: str | os.PathLike | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train on ``masks_dir/<id>.png`` for the ids of ``split``; write ``out`` (``pixsup.segnet/1``) and the
    loss log (default ``<out>.losses.csv``). Returns the summary of :func:`pixsup.engine.fit`."""
    with training_ranks(cfg.seed, device, deterministic=False) as ranks:
        steps = [RandomScale(*cfg.scale_range)] + ([RandomHorizontalFlip()] if cfg.flip else [])
        dataset = LabelFolderDataset(root, split, masks_dir, Compose(steps + [RandomCrop(cfg.crop_size)]), cfg.seed)
        model = build_segnet(cfg, cam_checkpoint=cam_checkpoint)
        params_dump = cfg.model_dump(mode="json")

        def losses(trained: nn.Module, batch: dict[str, Tensor], epoch: int) -> dict[str, Tensor]:
            targets = batch["target"]
            # Mean over the labelled pixels of the global batch.
            pixel_losses = F.cross_entropy(
                trained(batch["image"]).float(), targets, ignore_index=IGNORE_INDEX, reduction="sum"
            )
            return {"loss": ranks.share_of_mean(pixel_losses, ranks.sum((targets != IGNORE_INDEX).sum()))}

        backbone_params, head_params = model.param_groups()
        task = TrainingTask(
            name="seg",
            model=model,
            dataset=dataset,
            batch_size=min(cfg.batch_size, len(dataset)),
            batch_key="seg_train.batch_size (or the split's size, when smaller)",
            param_groups=[
                {"params": backbone_params, "lr": cfg.lr},
                {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult},
            ],
            loss_columns=LOSS_COLUMNS,
            losses=losses,
            save=lambda path: save_trained(path, FORMAT, model, params=params_dump),
        )
        identity = {
            "params": params_dump,
            "split": split,
            "masks": str(masks_dir),
            "cam_checkpoint": str(cam_checkpoint) if cam_checkpoint else None,
        }
        return fit(task, cfg, out, identity, ranks, losses_csv, stop_after_epoch, progress)


def load_segnet(path: str | os.PathLike) -> SegNet:
    """Rebuild a trained network from its ``pixsup.segnet/1`` file."""
    state = read_trained(path, FORMAT, required=("params",))
    return load_weights(path, build_segnet(SegTrainConfig(**state["params"]), pretrained="none"), state)
