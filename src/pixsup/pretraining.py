"""Pretraining the ``tiny`` backbone on the generated source dataset (:mod:`pixsup.data.source_parts`).

A plain single-label classifier, as an ImageNet one: the backbone, a 1x1 conv to
the source classes, global average pooling, cross-entropy. The loop is
:func:`pixsup.engine.fit`'s (resumable, stoppable, several processes). The file
written holds the backbone's state dict alone, as ``TinyBackbone`` names it, so
``cam_train.pretrained`` loads it like any weights file; ``auto`` on ``tiny``
finds it at :data:`pixsup.models.tiny.PRETRAINED_FILE`.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader

from .config import ConfigError, PretrainConfig
from .data.source_parts import HELD_OUT_STREAM, NUM_SOURCE_CLASSES, TRAIN_STREAM, SourcePartsDataset
from .engine import TrainingTask, fit, training_ranks
from .files import save_torch
from .models.backbones import create_backbone

log = logging.getLogger(__name__)


class SourceClassifier(nn.Module):
    """Backbone, 1x1 conv to the classes, global average pooling."""

    def __init__(self, backbone: nn.Module, num_classes: int) -> None:
        super().__init__()
        self.backbone = backbone
        self.classifier = nn.Conv2d(backbone.out_channels, num_classes, 1)

    def forward(self, images: Tensor) -> Tensor:
        return self.classifier(self.backbone(images)).mean(dim=(2, 3))


@torch.no_grad()
def held_out_accuracy(model: SourceClassifier, dataset: SourcePartsDataset, device: torch.device) -> float:
    """Top-1 accuracy (%) of ``model`` on ``dataset``."""
    model.eval()
    correct = 0
    for batch in DataLoader(dataset, batch_size=64):
        predicted = model(batch["image"].to(device)).argmax(dim=1).cpu()
        correct += int((predicted == batch["target"]).sum())
    return 100.0 * correct / len(dataset)


def pretrain_backbone(
    cfg: PretrainConfig,
    out: str | os.PathLike,
    losses_csv: str | os.PathLike | None = None,
    device: str = "auto",
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``tiny`` on the source dataset and write its backbone's weights to ``out``; return the
    training summary with ``held_out_accuracy`` (% of ``cfg.source.held_out`` new images) and
    ``chance_accuracy`` added."""
    if cfg.batch_size > cfg.source.images_per_epoch:
        raise ConfigError(
            f"pretrain.batch_size {cfg.batch_size} is more than the {cfg.source.images_per_epoch} images of an epoch "
            "(pretrain.source.images_per_epoch)"
        )
    with training_ranks(cfg.seed, device, cfg.deterministic) as ranks:
        dataset = SourcePartsDataset(cfg.source, TRAIN_STREAM, cfg.source.images_per_epoch)
        model = SourceClassifier(create_backbone("tiny", pretrained="none"), NUM_SOURCE_CLASSES)

        def losses(trained: nn.Module, batch: dict[str, Tensor], epoch: int) -> dict[str, Tensor]:
            total = F.cross_entropy(trained(batch["image"]).float(), batch["target"], reduction="sum")
            return {"loss": ranks.share_of_mean(total, ranks.sum(batch["target"].new_tensor(len(batch["target"]))))}

        task = TrainingTask(
            name="pretrain",
            model=model,
            dataset=dataset,
            batch_size=cfg.batch_size,
            batch_key="pretrain.batch_size",
            param_groups=[{"params": list(model.parameters()), "lr": cfg.lr}],
            loss_columns=("loss",),
            losses=losses,
            save=lambda path: save_torch(path, model.backbone.state_dict()),
        )
        identity = {"params": cfg.model_dump(mode="json"), "network": "tiny"}
        summary = fit(task, cfg, out, identity, ranks, losses_csv, stop_after_epoch, progress)
        if summary["finished"]:
            held_out = SourcePartsDataset(cfg.source, HELD_OUT_STREAM, cfg.source.held_out)
            summary["held_out_accuracy"] = round(held_out_accuracy(model, held_out, ranks.device), 2)
            summary["chance_accuracy"] = round(100.0 / NUM_SOURCE_CLASSES, 2)
            log.info(
                "source accuracy on %d held-out images: %.1f %% (chance %.1f %%)",
                cfg.source.held_out,
                summary["held_out_accuracy"],
                summary["chance_accuracy"],
            )
        return summary
