"""Data loading: the CAM training loader's images/s with the configured workers, against the model's.

On a synthetic dataset of the configured kind (params.yaml's data.synthetic,
fewer images), the loader of cam_train (its batch size, crop and workers) runs
one epoch; the baseline is the training step rate of the `baseline_same_budget`
variant (classification only, the fastest), on the same batches: the loader
must outpace it. A second figure compares the loader with the one it replaced,
which checked every item again (decoding its image a second time) in every new
worker process, at every epoch.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from pixsup.config import load_params
from pixsup.data.datasets import CamTrainDataset
from pixsup.data.synthetic import generate_synthetic
from pixsup.data.validate import check_item
from pixsup.data.voc import DataError
from pixsup.models import create_model

from .context import Options
from .measure import REPO, Record, Target, check_equal, interleaved_seconds
from .train_cam import Trainer

STAGE = "data_loading"
EPOCHS_COMPARED = 2
WORKERS_COMPARED = 2


class CheckedEveryTime(CamTrainDataset):
    """The loader before: every item checked (its image decoded once more) in every worker, every epoch."""

    def _load_image(self, i: int):
        problems = check_item(self.index, self.ids[i], require_mask=False)
        if problems:
            raise DataError("; ".join(problems))
        return self.ids[i], self.index.load_image(self.ids[i])


def _epochs(dataset: CamTrainDataset, batch_size: int, workers: int, epochs: int) -> list[dict]:
    """Every batch of ``epochs`` epochs, in a fixed order, with new loader workers each epoch as in training."""
    batches = []
    for epoch in range(epochs):
        dataset.set_epoch(epoch)
        batches += list(DataLoader(dataset, batch_size=batch_size, num_workers=workers))
    return batches


def run(options: Options) -> list[Record]:
    params = load_params(REPO / "params.yaml")
    cfg = params.cam_train
    count = 16 if options.quick else 8 * cfg.batch_size
    batch = min(cfg.batch_size, count)
    synthetic = params.data.synthetic.model_copy(
        update={"num_train": count, "num_aug_extra": 0, "num_val": 1, "num_test": 0}
    )
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "VOC2012"
        generate_synthetic(root, synthetic, progress=False)

        def epochs(kind: type[CamTrainDataset], workers: int, epochs: int) -> list[dict]:
            # A new dataset each time: nothing checked yet, as at the start of a run.
            return _epochs(kind(root, "train", cfg.augment, cfg.seed), batch, workers, epochs)

        check = check_equal(
            f"images and labels of {EPOCHS_COMPARED} epochs",
            [b[k] for b in epochs(CamTrainDataset, WORKERS_COMPARED, EPOCHS_COMPARED) for k in ("image", "label")],
            [b[k] for b in epochs(CheckedEveryTime, WORKERS_COMPARED, EPOCHS_COMPARED) for k in ("image", "label")],
        )
        batches = epochs(CamTrainDataset, cfg.num_workers, 1)
        torch.manual_seed(cfg.seed)
        trainer = Trainer(
            create_model(cfg.backbone, proj_dim=cfg.proj_dim, pretrained="none"), cfg, "baseline_same_budget"
        )
        seconds = interleaved_seconds(
            {
                # The first epoch, every item checked: the loader's slowest.
                "loader": lambda: epochs(CamTrainDataset, cfg.num_workers, 1),
                "steps": lambda: [trainer.step(b["image"], b["label"]) for b in batches],
                "ours": lambda: epochs(CamTrainDataset, WORKERS_COMPARED, EPOCHS_COMPARED),
                "before": lambda: epochs(CheckedEveryTime, WORKERS_COMPARED, EPOCHS_COMPARED),
            },
            1 if options.quick else 5,
        )
    setting = (
        f"{count} synthetic images, batch {batch}, crop {cfg.augment.crop_size}, "
        f"{cfg.num_workers} workers (params.yaml), model {cfg.backbone}"
    )
    return [
        Record(
            STAGE,
            "loader images/s (first epoch) vs the baseline variant's training images/s",
            count / seconds["loader"],
            len(batches) * batch / seconds["steps"],
            Target(">=", 1.0),
            check,
            setting,
        ),
        Record(
            STAGE,
            f"loader seconds for {EPOCHS_COMPARED} epochs, {WORKERS_COMPARED} workers: items checked "
            "once vs at every epoch",
            seconds["ours"],
            seconds["before"],
            Target("<=", 1.0),
            check,
        ),
    ]
