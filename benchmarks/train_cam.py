"""train_cam: the step time of the `full` variant (RCM + MAM against a SupportNet) against the baseline.

One SGD step (forward, backward, update) of each variant on the same batch,
from the same weights; the baseline is `baseline_same_budget` (classification
only, no SupportNet). The `full` step adds SupportNet forwards at every MAM
scale, without backward; the target bounds what that may cost. Two settings:
the configured one (params.yaml's cam_train) and ResNet-50 on 256 px crops.
"""

from __future__ import annotations

import copy

import torch

from pixsup.cam.losses import PrototypeMemory
from pixsup.cam.training import compute_losses
from pixsup.cam.variants import VARIANTS
from pixsup.config import CamTrainConfig, load_params
from pixsup.models import create_model
from pixsup.models.support import SupportNet

from .context import Options
from .measure import REPO, Record, Target, check_close, interleaved_seconds

STAGE = "train_cam"
MAX_STEP_RATIO = 2.5


def _settings(quick: bool) -> dict[str, CamTrainConfig]:
    configured = load_params(REPO / "params.yaml").cam_train
    if quick:
        return {
            "tiny, batch 4, 64 px": configured.model_copy(
                update={
                    "backbone": "tiny",
                    "batch_size": 4,
                    "augment": configured.augment.model_copy(update={"crop_size": 64}),
                }
            )
        }
    resnet50 = configured.model_copy(
        update={
            "backbone": "resnet50",
            "batch_size": 4,
            "augment": configured.augment.model_copy(update={"crop_size": 256}),
        }
    )
    return {
        f"params.yaml: {configured.backbone}, batch {configured.batch_size}, "
        f"{configured.augment.crop_size} px": configured,
        "resnet50, batch 4, 256 px": resnet50,
    }


class Trainer:
    """One variant's network, SupportNet and optimiser; ``step`` runs one SGD step and returns the loss terms."""

    def __init__(self, main: torch.nn.Module, cfg: CamTrainConfig, variant: str) -> None:
        kind = VARIANTS[variant]
        self.cfg, self.use_rcm, self.use_mam = cfg, kind.rcm, kind.mam
        self.main = copy.deepcopy(main).train()
        self.support = SupportNet(main, "frozen") if self.use_rcm or self.use_mam else None
        self.memory = PrototypeMemory(cfg.rcm.memory) if self.use_rcm else None
        self.optimizer = torch.optim.SGD(
            [p for p in self.main.parameters() if p.requires_grad],
            lr=cfg.lr,
            momentum=cfg.momentum,
            weight_decay=cfg.weight_decay,
        )

    def step(self, images: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = compute_losses(
            self.main, self.support, images, labels, self.cfg, self.use_rcm, self.use_mam, self.memory
        )
        self.optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        self.optimizer.step()
        return terms


def run(options: Options) -> list[Record]:
    records = []
    for name, cfg in _settings(options.quick).items():
        torch.manual_seed(cfg.seed)
        main = create_model(cfg.backbone, proj_dim=cfg.proj_dim, pretrained="none")
        crop = cfg.augment.crop_size
        images = torch.randn(cfg.batch_size, 3, crop, crop)
        labels = (torch.rand(cfg.batch_size, 20) < 0.15).float()
        labels[:, 0] = 1.0  # every image has a class
        full, baseline = Trainer(main, cfg, "full"), Trainer(main, cfg, "baseline_same_budget")
        # Same weights, same batch: the classification term is the same computation in both.
        check = check_close(
            "cls loss of the first step",
            full.step(images, labels)["cls"].item(),
            baseline.step(images, labels)["cls"].item(),
            1e-6,
        )
        seconds = interleaved_seconds(
            {"full": lambda: full.step(images, labels), "baseline": lambda: baseline.step(images, labels)},
            repeats=2 if options.quick else 5,
        )
        records.append(
            Record(
                STAGE,
                f"step seconds, full vs baseline ({name})",
                seconds["full"],
                seconds["baseline"],
                Target("<=", MAX_STEP_RATIO),
                check,
            )
        )
    return records
