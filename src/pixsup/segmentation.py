"""Segmentation: DeepLab-v2 trained on pseudo masks, and its single- and multi-scale prediction.

Checkpoints (``pixsup.segnet/1``) hold the params and weights; training
resumes from ``<out>.resume.pt`` like the other training steps. On CUDA the
forward passes run under bf16 autocast with channels_last.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from .checkpoints import CheckpointError, load_cam_net
from .config import SegTrainConfig
from .data.datasets import LabelFolderDataset
from .data.transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomScale, normalize_image
from .data.voc_format import IGNORE_INDEX
from .distributed import process_group
from .io import write_text
from .models import create_backbone
from .models.segnet import SegNet
from .training import (autocast_for, epoch_loader, finish_training, load_resume, load_weights, losses_csv_text,
                       read_trained, resolve_device, save_resume, seed_everything, sgd_poly, training_summary)

log = logging.getLogger(__name__)

FORMAT = "pixsup.segnet/1"
LOSS_COLUMNS = ("epoch", "iteration", "lr", "loss")


def build_segnet(cfg: SegTrainConfig, pretrained: str | None = None,
                 cam_checkpoint: str | os.PathLike | None = None) -> SegNet:
    """The network of ``cfg``; ``pretrained: cam`` starts from the backbone of the CAM network checkpoint."""
    pretrained = cfg.pretrained if pretrained is None else pretrained
    if pretrained == "cam":
        if cam_checkpoint is None:
            raise ValueError("seg_train.pretrained: cam needs the CAM network checkpoint (--cam-model)")
        cam_net, state = load_cam_net(cam_checkpoint)
        if state["backbone"] != cfg.backbone:
            raise CheckpointError(f"{cam_checkpoint}: backbone '{state['backbone']}' differs from "
                                  f"seg_train.backbone '{cfg.backbone}'")
        return SegNet(cam_net.backbone, tuple(cfg.aspp_rates))
    return SegNet(create_backbone(cfg.backbone, pretrained=pretrained), tuple(cfg.aspp_rates))


def train_seg(cfg: SegTrainConfig, root: str | os.PathLike, split: str, masks_dir: str | os.PathLike,
              out: str | os.PathLike, losses_csv: str | os.PathLike | None = None, device: str = "auto",
              cam_checkpoint: str | os.PathLike | None = None, stop_after_epoch: int | None = None,
              progress: bool = True) -> dict[str, Any]:
    """Train on ``masks_dir/<id>.png`` for the ids of ``split``; write ``out`` and the loss CSV.

    Resumes from ``<out>.resume.pt`` and stops early after ``stop_after_epoch`` like
    :func:`pixsup.train.train_cam`, and like it runs as several processes on slices
    of the global batch when a launcher started it, rank 0 writing.
    """
    out = Path(out)
    losses_csv = Path(losses_csv) if losses_csv else out.with_name(out.name + ".losses.csv")
    seed_everything(cfg.seed)
    with process_group(resolve_device(device)) as ranks:
        dev = ranks.device
        steps = [RandomScale(*cfg.scale_range)] + ([RandomHorizontalFlip()] if cfg.flip else [])
        dataset = LabelFolderDataset(root, split, masks_dir, Compose(steps + [RandomCrop(cfg.crop_size)]),
                                     cfg.seed)
        batch_size = min(cfg.batch_size, len(dataset))
        ranks.per_rank_batch(batch_size, "seg_train.batch_size (or the split's size, when smaller)")
        model = build_segnet(cfg, cam_checkpoint=cam_checkpoint).to(dev)
        if dev.type == "cuda":
            model.to(memory_format=torch.channels_last)
        backbone_params, head_params = model.param_groups()
        iters_per_epoch = len(dataset) // batch_size
        optimizer, scheduler = sgd_poly(
            [{"params": backbone_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult}],
            cfg.momentum, cfg.weight_decay, cfg.epochs * iters_per_epoch, cfg.poly_power)
        identity = {"params": cfg.model_dump(mode="json"), "split": split, "masks": str(masks_dir),
                    "cam_checkpoint": str(cam_checkpoint) if cam_checkpoint else None}
        start_epoch, rows, _ = load_resume(out, identity, model, optimizer, scheduler)
        trained = ranks.wrap(model)
        amp = autocast_for(dev)
        started = time.perf_counter()
        for epoch in range(start_epoch, cfg.epochs):
            dataset.set_epoch(epoch)
            loader = epoch_loader(dataset, batch_size, cfg.seed, epoch, cfg.num_workers, ranks)
            trained.train()
            for batch in tqdm(loader, desc=f"seg epoch {epoch + 1}/{cfg.epochs}",
                              disable=not progress or not ranks.is_main, leave=False):
                images = batch["image"].to(dev, non_blocking=True)
                if dev.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                targets = batch["target"].to(dev, non_blocking=True)
                with amp:
                    logits = trained(images)
                # Mean over the labelled pixels of the global batch.
                pixel_losses = F.cross_entropy(logits.float(), targets, ignore_index=IGNORE_INDEX, reduction="sum")
                loss = ranks.share_of_mean(pixel_losses, ranks.sum((targets != IGNORE_INDEX).sum()))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                scheduler.step()
                rows.append({"epoch": epoch, "iteration": scheduler.last_epoch,
                             "lr": optimizer.param_groups[0]["lr"], **ranks.mean_over_ranks({"loss": loss})})
            log.info("seg epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs,
                     np.mean([r["loss"] for r in rows if r["epoch"] == epoch]))
            ranks.check_identical(model, "the segmentation network")
            if ranks.is_main:
                save_resume(out, identity, epoch + 1, rows, model, optimizer, scheduler)
                write_text(losses_csv, losses_csv_text(rows, LOSS_COLUMNS))
            ranks.barrier()
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                log.info("stopping after epoch %d as asked; rerun to resume", epoch + 1)
                return {"finished": False, "epochs_done": epoch + 1}
        seconds = time.perf_counter() - started
        if ranks.is_main:
            summary = finish_training(out, FORMAT, cfg.model_dump(mode="json"), model, rows, losses_csv,
                                      LOSS_COLUMNS, cfg.epochs, seconds)
        else:
            summary = training_summary(rows, cfg.epochs, seconds)
        ranks.barrier()
    return {"finished": True, "processes": ranks.world_size, **summary}


def load_segnet(path: str | os.PathLike) -> SegNet:
    """Rebuild a trained network from its ``pixsup.segnet/1`` file."""
    state = read_trained(path, FORMAT)
    return load_weights(path, build_segnet(SegTrainConfig(**state["params"]), pretrained="none"), state)


@torch.no_grad()
def predict_probs(model: SegNet, image: np.ndarray, scales: Sequence[float], flip: bool,
                  device: torch.device) -> np.ndarray:
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
