"""IRN's class-boundary branch: trained from pairwise affinities of confident labels, read by the random walk.

The backbone is frozen (IRN's choice: only the branch learns); each of its
stages feeds a 1x1 conv + GroupNorm + ReLU, upsampled to stride 4 and fused by
a 1x1 conv into one boundary probability per stride-4 cell. Training minimises
:func:`~pixsup.pseudo_labels.affinity.affinity_loss` over every pair within
``train_radius``, the affinity of a pair being ``1 - max(boundary)`` on the
line between its pixels.
"""

from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoints import load_cam_net
from ..config import IrnConfig
from ..data.datasets import LabelFolderDataset
from ..data.transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomResizeLong, normalize_image
from ..io import write_text
from ..models import create_backbone
from ..models.weights import freeze
from ..training import (autocast_for, finish_training, load_resume, load_weights, losses_csv_text, read_trained,
                        resolve_device, save_resume, seed_everything, sgd_poly)
from .affinity import affinity_labels, affinity_loss, neighbour_offsets, pair_affinities

log = logging.getLogger(__name__)

STRIDE = 4
FORMAT = "pixsup.irn/1"
LOSS_COLUMNS = ("epoch", "iteration", "lr", "loss", "bg_pos", "fg_pos", "neg")


class BoundaryNet(nn.Module):
    """Frozen backbone + trainable multi-level boundary branch; ``forward`` gives (B, H/4, W/4) in [0, 1]."""

    def __init__(self, backbone: nn.Module, width: int = 32) -> None:
        super().__init__()
        self.backbone = backbone
        freeze(self.backbone)
        self.branches = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, width, 1, bias=False), nn.GroupNorm(4, width), nn.ReLU(inplace=True))
            for c in backbone.stage_channels)
        self.fuse = nn.Conv2d(width * len(backbone.stage_channels), 1, 1)

    def train(self, mode: bool = True) -> "BoundaryNet":
        super().train(mode)
        self.backbone.eval()  # frozen: BatchNorm statistics stay as trained
        return self

    def forward(self, x: Tensor) -> Tensor:
        size = (math.ceil(x.shape[2] / STRIDE), math.ceil(x.shape[3] / STRIDE))
        with torch.no_grad():
            stages = self.backbone.forward_stages(x)
        levels = [F.interpolate(branch(stage.float()), size=size, mode="bilinear", align_corners=False)
                  for branch, stage in zip(self.branches, stages)]
        return torch.sigmoid(self.fuse(torch.cat(levels, dim=1)))[:, 0]


def build_boundary_net(cfg: IrnConfig, cam_checkpoint: str | os.PathLike | None = None) -> BoundaryNet:
    """The network of ``cfg``; ``pretrained: cam`` takes the backbone of the CAM network checkpoint."""
    if cfg.pretrained == "cam":
        if cam_checkpoint is None:
            raise ValueError("pseudo_labels.irn.pretrained: cam needs the CAM network checkpoint")
        cam_net, state = load_cam_net(cam_checkpoint)
        if state["backbone"] != cfg.backbone:
            raise ValueError(f"{cam_checkpoint}: backbone '{state['backbone']}' differs from "
                             f"pseudo_labels.irn.backbone '{cfg.backbone}'")
        return BoundaryNet(cam_net.backbone)
    return BoundaryNet(create_backbone(cfg.backbone, pretrained=cfg.pretrained))


def _targets(labels: Tensor, offsets: tuple[tuple[int, int], ...]) -> dict[str, Tensor]:
    return affinity_labels(labels[:, ::STRIDE, ::STRIDE], offsets)


def train_irn(cfg: IrnConfig, root: str | os.PathLike, split: str, label_dir: str | os.PathLike,
              out: str | os.PathLike, cam_checkpoint: str | os.PathLike | None = None,
              losses_csv: str | os.PathLike | None = None, device: str = "auto",
              progress: bool = True) -> dict[str, Any]:
    """Train the boundary branch on confident labels; write ``out`` (``pixsup.irn/1``) and the loss CSV.

    Resumes from ``<out>.resume.pt`` like ``train_cam``.
    """
    out = Path(out)
    losses_csv = Path(losses_csv) if losses_csv else out.with_name(out.name + ".losses.csv")
    dev = resolve_device(device)
    seed_everything(cfg.seed)
    transform = Compose([RandomResizeLong(*cfg.resize_long), RandomHorizontalFlip(), RandomCrop(cfg.crop_size)])
    dataset = LabelFolderDataset(root, split, label_dir, transform, cfg.seed)
    batch_size = min(cfg.batch_size, len(dataset))
    model = build_boundary_net(cfg, cam_checkpoint).to(dev)
    iters_per_epoch = len(dataset) // batch_size
    head = [p for p in model.parameters() if p.requires_grad]
    optimizer, scheduler = sgd_poly([{"params": head, "lr": cfg.lr}], cfg.momentum, cfg.weight_decay,
                                    cfg.epochs * iters_per_epoch, cfg.poly_power)
    identity = {"params": cfg.model_dump(mode="json"), "split": split, "labels": str(label_dir),
                "cam_checkpoint": str(cam_checkpoint) if cam_checkpoint else None}
    start_epoch, rows, _ = load_resume(out, identity, model, optimizer, scheduler)
    offsets = neighbour_offsets(cfg.train_radius, half=True)
    amp = autocast_for(dev)
    started = time.perf_counter()
    for epoch in range(start_epoch, cfg.epochs):
        dataset.set_epoch(epoch)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=True,
                            num_workers=cfg.num_workers, pin_memory=dev.type == "cuda",
                            generator=torch.Generator().manual_seed(cfg.seed * 1000 + epoch))
        model.train()
        for batch in tqdm(loader, desc=f"irn epoch {epoch + 1}/{cfg.epochs}", disable=not progress, leave=False):
            images = batch["image"].to(dev, non_blocking=True)
            targets = _targets(batch["target"].to(dev, non_blocking=True), offsets)
            with amp:
                boundary = model(images)
            terms = affinity_loss(pair_affinities(boundary.float(), offsets), targets)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            scheduler.step()
            rows.append({"epoch": epoch, "iteration": scheduler.last_epoch, "lr": optimizer.param_groups[0]["lr"],
                         **{k: terms[k].item() for k in LOSS_COLUMNS[3:]}})
        log.info("irn epoch %d/%d: loss %.4f", epoch + 1, cfg.epochs,
                 np.mean([r["loss"] for r in rows if r["epoch"] == epoch]))
        save_resume(out, identity, epoch + 1, rows, model, optimizer, scheduler)
        write_text(losses_csv, losses_csv_text(rows, LOSS_COLUMNS))
    return finish_training(out, FORMAT, cfg.model_dump(mode="json"), model, rows, losses_csv, LOSS_COLUMNS,
                           cfg.epochs, time.perf_counter() - started)


def load_boundary_net(path: str | os.PathLike) -> BoundaryNet:
    """Rebuild a trained boundary network from its ``pixsup.irn/1`` file."""
    state = read_trained(path, FORMAT)
    cfg = IrnConfig(**{**state["params"], "pretrained": "none"})
    return load_weights(path, BoundaryNet(create_backbone(cfg.backbone, pretrained="none")), state)


@torch.no_grad()
def predict_boundary(model: BoundaryNet, image: np.ndarray, device: torch.device) -> Tensor:
    """Boundary map (ceil(H/4), ceil(W/4)) of one uint8 image: the mean of the image and its mirror."""
    x = normalize_image(image).unsqueeze(0).to(device)
    both = model(torch.cat([x, x.flip(-1)]))
    return ((both[0] + both[1].flip(-1)) / 2).float().cpu()
