"""IRN's class-boundary branch (:class:`~pixsup.models.BoundaryNet`): training on confident labels, and
the boundary map the random walk reads.

Training minimises :func:`~pixsup.pseudo_labels.affinity.affinity_loss` over every
pair within ``train_radius`` on the stride-4 grid, the affinity of a pair being
``1 - max(boundary)`` on the line between its pixels. The loop is
:func:`pixsup.engine.fit`'s: resumable, stoppable after an epoch, several processes.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoints import load_cam_backbone, load_weights, read_trained, save_trained
from ..config import IrnConfig
from ..data.datasets import LabelFolderDataset
from ..data.transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomResizeLong, normalize_image
from ..engine import TrainingTask, fit, training_ranks
from ..models import BoundaryNet, create_model
from ..models.boundary_net import STRIDE
from .affinity import affinity_labels, affinity_loss, neighbour_offsets, pair_affinities

FORMAT = "pixsup.irn/1"
LOSS_COLUMNS = ("loss", "bg_pos", "fg_pos", "neg")


def build_boundary_net(
    cfg: IrnConfig, cam_checkpoint: str | os.PathLike | None = None, pretrained: str | None = None
) -> BoundaryNet:
    """The network of ``cfg``; ``pretrained: cam`` takes the backbone of the CAM network checkpoint."""
    pretrained = cfg.pretrained if pretrained is None else pretrained
    if pretrained == "cam":
        return create_model(load_cam_backbone(cam_checkpoint, cfg.backbone, "pseudo_labels.irn"), "boundary")
    return create_model(cfg.backbone, "boundary", pretrained=pretrained)


def train_irn(
    cfg: IrnConfig,
    root: str | os.PathLike,
    split: str,
    label_dir: str | os.PathLike,
    out: str | os.PathLike,
    cam_checkpoint: str | os.PathLike | None = None,
    losses_csv: str | os.PathLike | None = None,
    device: str = "auto",
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the boundary branch on the confident labels ``label_dir/<id>.png`` of ``split``; write ``out``
    (``pixsup.irn/1``) and the loss log (default ``<out>.losses.csv``). Returns the summary of
    :func:`pixsup.engine.fit`."""
    with training_ranks(cfg.seed, device, deterministic=False) as ranks:
        transform = Compose([RandomResizeLong(*cfg.resize_long), RandomHorizontalFlip(), RandomCrop(cfg.crop_size)])
        dataset = LabelFolderDataset(root, split, label_dir, transform, cfg.seed)
        model = build_boundary_net(cfg, cam_checkpoint)
        offsets = neighbour_offsets(cfg.train_radius, half=True)
        params_dump = cfg.model_dump(mode="json")

        def losses(trained: nn.Module, batch: dict[str, Tensor], epoch: int) -> dict[str, Tensor]:
            targets = affinity_labels(batch["target"][:, ::STRIDE, ::STRIDE], offsets)
            return affinity_loss(pair_affinities(trained(batch["image"]).float(), offsets), targets, ranks=ranks)

        task = TrainingTask(
            name="irn",
            model=model,
            dataset=dataset,
            batch_size=min(cfg.batch_size, len(dataset)),
            batch_key="pseudo_labels.irn.batch_size (or the split's size, when smaller)",
            param_groups=[{"params": model.trainable_parameters(), "lr": cfg.lr}],
            loss_columns=LOSS_COLUMNS,
            losses=losses,
            save=lambda path: save_trained(path, FORMAT, model, params=params_dump),
        )
        identity = {
            "params": params_dump,
            "split": split,
            "labels": str(label_dir),
            "cam_checkpoint": str(cam_checkpoint) if cam_checkpoint else None,
        }
        return fit(task, cfg, out, identity, ranks, losses_csv, stop_after_epoch, progress)


def load_boundary_net(path: str | os.PathLike) -> BoundaryNet:
    """Rebuild a trained boundary network from its ``pixsup.irn/1`` file."""
    state = read_trained(path, FORMAT, required=("params",))
    cfg = IrnConfig(**state["params"])
    return load_weights(path, build_boundary_net(cfg, pretrained="none"), state)


@torch.no_grad()
def predict_boundary(model: BoundaryNet, image: np.ndarray, device: torch.device) -> Tensor:
    """Boundary map (ceil(H/4), ceil(W/4)) of one uint8 image: the mean of the image and its mirror."""
    x = normalize_image(image).unsqueeze(0).to(device)
    both = model(torch.cat([x, x.flip(-1)]))
    return ((both[0] + both[1].flip(-1)) / 2).float().cpu()
