"""IRN's class-boundary branch (:class:`~pixsup.models.BoundaryNet`): training on confident labels, and
the boundary map the random walk reads.

Training minimises :func:`~pixsup.pseudo_labels.affinity.affinity_loss` over every
pair within ``train_radius`` on the stride-4 grid, the affinity of a pair being
``1 - max(boundary)`` over its path cells (:func:`~pixsup.pseudo_labels.affinity.path_cells`,
IRN's band around the segment between the two pixels). The loop is
:func:`pixsup.engine.fit`'s: resumable, stoppable after an epoch, several processes.

Inference (:func:`predict_boundary`) is IRN's ``EdgeDisplacement``: the image and its
mirror, zero-padded (after normalisation) on the right and bottom to the training
crop size, run as one batch; the logits are cropped to the image's stride-4 grid and
the boundary is the sigmoid of their mean.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..checkpoints import load_cam_backbone, load_weights, read_trained, save_trained
from ..config import IrnConfig
from ..data.datasets import LabelFolderDataset
from ..data.transforms import Compose, RandomCrop, RandomHorizontalFlip, RandomResizeLong, normalize_image
from ..engine import TrainingTask, fit, training_ranks
from ..models import BoundaryNet, create_model
from ..models.boundary_net import STRIDE
from .affinity import affinity_labels, affinity_loss, cell_labels, neighbour_offsets, pair_affinities

FORMAT = "pixsup.irn/1"
LOSS_COLUMNS = ("loss", "bg_pos", "fg_pos", "neg")


def build_boundary_net(
    cfg: IrnConfig, cam_checkpoint: str | os.PathLike | None = None, pretrained: str | None = None
) -> BoundaryNet:
    """The network of ``cfg``; ``pretrained: cam`` takes the backbone of the CAM network checkpoint."""
    pretrained = cfg.pretrained if pretrained is None else pretrained
    if pretrained == "cam":
        model = create_model(load_cam_backbone(cam_checkpoint, cfg.backbone, "pseudo_labels.irn"), "boundary")
    else:
        model = create_model(cfg.backbone, "boundary", pretrained=pretrained)
    model.crop_size = cfg.crop_size  # inference pads to it, as IRN's EdgeDisplacement does
    return model


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
            targets = affinity_labels(cell_labels(batch["target"], STRIDE), offsets)
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


def inference_padding(height: int, width: int, crop_size: int | None, multiple: int) -> tuple[int, int]:
    """Padded (height, width) of a boundary-inference input: at least ``crop_size`` (IRN pads every image
    to its training crop, 512) and, for larger images (which IRN would cut), the next multiple of the
    backbone's stride, so every level reaches the stride-4 grid by an integer upsampling."""
    floor = crop_size or 0

    def padded(side: int) -> int:
        return -(-max(side, floor) // multiple) * multiple

    return padded(height), padded(width)


@torch.no_grad()
def predict_boundary(
    model: BoundaryNet, image: np.ndarray, device: torch.device, crop_size: int | None = None
) -> Tensor:
    """Boundary map (ceil(H/4), ceil(W/4)) of one uint8 image, as IRN's ``EdgeDisplacement``.

    The normalised image and its mirror are zero-padded on the right and bottom to
    :func:`inference_padding` (``crop_size``, default the model's training crop), run as one batch,
    cropped to the image's stride-4 grid, and the boundary is ``sigmoid((l + flip(l_mirror)) / 2)``:
    the sigmoid of the mean logit, not the mean of the sigmoids.
    """
    x = normalize_image(image).unsqueeze(0).to(device)
    height, width = x.shape[2:]
    multiple = max(STRIDE, getattr(model.backbone, "output_stride", STRIDE))
    crop_size = model.crop_size if crop_size is None else crop_size
    pad_h, pad_w = inference_padding(height, width, crop_size, multiple)
    batch = F.pad(torch.cat([x, x.flip(-1)]), (0, pad_w - width, 0, pad_h - height))
    logits = model.logits(batch)[:, : -(-height // STRIDE), : -(-width // STRIDE)].float()
    return torch.sigmoid(logits[0] / 2 + logits[1].flip(-1) / 2).cpu()
