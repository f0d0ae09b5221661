"""Training a CAM network: the SupportNet, or a MainNet variant against it (:mod:`pixsup.cam.variants`).

``L = L_cls + lambda_rcm * L_rcm + lambda_mam * L_mam`` with the lambdas of
``cam_train.rcm.weight`` / ``cam_train.mam.weight``. With a frozen SupportNet
(the default) a MainNet starts from the SupportNet's weights. The loop itself is
:func:`pixsup.engine.fit`'s.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..checkpoints import CheckpointError, load_cam_net, save_cam_net
from ..config import CamTrainConfig, ConfigError
from ..data.datasets import CamTrainDataset
from ..engine import TrainingTask, fit, training_ranks
from ..models import CamNet, create_model
from ..models.support import SupportNet
from ..runtime.distributed import Ranks
from .losses import PrototypeMemory, classification_loss, mam_loss, mam_target, normalize_cam, rcm_loss, resize_to
from .variants import VARIANTS, Variant

LOSS_COLUMNS = ("loss", "cls", "rcm", "mam")


def _support_cams_at_scales(
    support: SupportNet, images: Tensor, labels: Tensor, support_cam: Tensor, scales: tuple[float, ...]
) -> list[Tensor]:
    """Normalised SupportNet CAMs of the batch resized by each scale, on the scale-1 CAM grid."""
    grid = support_cam.shape[2:]
    cams = []
    for scale in scales:
        if scale == 1.0:
            cams.append(support_cam)
            continue
        size = [max(1, round(images.shape[2] * scale)), max(1, round(images.shape[3] * scale))]
        cam = support(resize_to(images, size), with_proj=False)["cam"].float()
        cams.append(normalize_cam(resize_to(cam, grid), labels))
    return cams


def compute_losses(
    main: nn.Module,
    support: SupportNet | None,
    images: Tensor,
    labels: Tensor,
    cfg: CamTrainConfig,
    use_rcm: bool,
    use_mam: bool,
    memory: PrototypeMemory | None = None,
    ranks: Ranks = Ranks(),
) -> dict[str, Tensor]:
    """All loss terms of one batch (this rank's share of them; ``main`` is the CamNet or its
    DistributedDataParallel wrapper); ``loss`` is the weighted total. SupportNet gets no gradients."""
    out = main(images, with_proj=use_rcm)
    terms = {"cls": classification_loss(out["logits"], labels)}
    zero = out["logits"].new_zeros(())
    terms["rcm"] = terms["mam"] = zero
    if use_rcm or use_mam:
        if support is None:
            raise ValueError("RCM/MAM need a SupportNet")
        main_cam = normalize_cam(out["cam"].float(), labels)
        support_out = support(images, with_proj=use_rcm)
        support_cam = normalize_cam(support_out["cam"].float(), labels)
        multiscale_regions = use_rcm and cfg.rcm.regions == "multiscale"
        scaled = (
            _support_cams_at_scales(support, images, labels, support_cam, cfg.mam.scales)
            if use_mam or multiscale_regions
            else None
        )
        if use_rcm:
            r = cfg.rcm
            # A sparse SupportNet CAM calls most of an object background; the
            # union over scales keeps the less discriminative parts out of it.
            region_cam = torch.stack(scaled).amax(dim=0) if multiscale_regions else support_cam
            terms["rcm"] = rcm_loss(
                out["proj"].float(),
                support_out["proj"].float(),
                region_cam,
                r.fg_threshold,
                r.bg_threshold,
                r.tau,
                memory,
                ranks,
                r.bg_margin,
            )
        if use_mam:
            m = cfg.mam
            target, _ = mam_target(main_cam, scaled, m.fusion, m.temperature, m.dissimilarity)
            terms["mam"] = mam_loss(main_cam, target, labels, m.one_sided, m.bg_weight, m.bg_threshold, ranks)
    terms["loss"] = terms["cls"] + cfg.rcm.weight * terms["rcm"] + cfg.mam.weight * terms["mam"]
    return terms


def _build_networks(
    cfg: CamTrainConfig, name: str, variant: Variant, support_ckpt: str | os.PathLike | None
) -> tuple[CamNet, SupportNet | None]:
    if name == "support" and support_ckpt is not None:
        raise ValueError("variant 'support' is the SupportNet itself and trains without --support")
    if variant.from_support and support_ckpt is None and (not variant.self_supervised or cfg.support.kind == "frozen"):
        raise ValueError(
            f"variant '{name}'"
            + (" with support.kind: frozen" if variant.self_supervised else "")
            + " needs the trained SupportNet (the support checkpoint): pass --support"
        )
    if support_ckpt is not None:
        main, state = load_cam_net(support_ckpt)
        if state["backbone"] != cfg.backbone:
            raise CheckpointError(
                f"{support_ckpt}: SupportNet backbone '{state['backbone']}' differs from "
                f"cam_train.backbone '{cfg.backbone}'"
            )
    else:
        main = create_model(cfg.backbone, proj_dim=cfg.proj_dim, pretrained=cfg.pretrained)
    support = SupportNet(main, cfg.support.kind, cfg.support.ema_momentum) if variant.self_supervised else None
    return main, support


def train_cam(
    cfg: CamTrainConfig,
    root: str | os.PathLike,
    split: str,
    variant: str,
    out: str | os.PathLike,
    support_ckpt: str | os.PathLike | None = None,
    losses_csv: str | os.PathLike | None = None,
    cls_labels: dict[str, np.ndarray] | None = None,
    device: str = "auto",
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the CAM network ``variant`` (a name of :data:`~pixsup.cam.variants.VARIANTS`) on ``split``;
    write ``out`` (``pixsup.cam_net/1``) and the loss log (``losses_csv``, default ``<out>.losses.csv``).

    Resumable, stoppable after an epoch and runnable as several processes as every training of
    :func:`pixsup.engine.fit` is. Returns its summary.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant '{variant}' ({' | '.join(VARIANTS)})")
    kind = VARIANTS[variant]
    with training_ranks(cfg.seed, device, cfg.deterministic) as ranks:
        dataset = CamTrainDataset(root, split, cfg.augment, cfg.seed, cls_labels=cls_labels)
        if len(dataset) < cfg.batch_size:
            raise ConfigError(
                f"cam_train.batch_size {cfg.batch_size} is more than the {len(dataset)} images of split '{split}'"
            )
        main, support = _build_networks(cfg, variant, kind, support_ckpt)
        if support is not None:
            support.to(ranks.device)
        memory = PrototypeMemory(cfg.rcm.memory) if kind.rcm else None
        params_dump = cfg.model_dump(mode="json")
        support_name = str(support_ckpt) if support_ckpt else None

        def losses(model: nn.Module, batch: dict[str, Tensor], epoch: int) -> dict[str, Tensor]:
            # With an EMA SupportNet the self-supervision waits for a sensible teacher.
            aux_on = cfg.support.kind == "frozen" or epoch >= cfg.warmup_epochs
            return compute_losses(
                model,
                support,
                batch["image"],
                batch["label"],
                cfg,
                kind.rcm and aux_on,
                kind.mam and aux_on,
                memory,
                ranks,
            )

        def resume_state() -> dict[str, Any]:
            return {
                "support": support.net.state_dict() if support is not None and support.kind == "ema" else None,
                "memory": memory.state_dict() if memory is not None else None,
            }

        def load_resume_state(state: dict[str, Any]) -> None:
            if support is not None and state.get("support") is not None:
                support.net.load_state_dict(state["support"])
            if memory is not None and state.get("memory") is not None:
                memory.load_state_dict(state["memory"], ranks.device)

        backbone_params, head_params = main.param_groups()
        ema = support is not None and support.kind == "ema"
        task = TrainingTask(
            name=variant,
            model=main,
            dataset=dataset,
            batch_size=cfg.batch_size,
            batch_key="cam_train.batch_size",
            param_groups=[
                {"params": backbone_params, "lr": cfg.lr},
                {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult},
            ],
            loss_columns=LOSS_COLUMNS,
            losses=losses,
            save=lambda path: save_cam_net(
                path,
                main,
                cfg.backbone,
                cfg.proj_dim,
                {"variant": variant, "params": params_dump, "support": support_name},
            ),
            after_step=(lambda: support.update(main)) if ema else (lambda: None),
            resume_state=resume_state,
            load_resume_state=load_resume_state,
            same_on_every_rank={"the EMA SupportNet": support.net} if ema else {},
            # The projection head gets no gradient without RCM, or while an EMA SupportNet warms up.
            unused_parameters=not kind.rcm or (cfg.support.kind == "ema" and cfg.warmup_epochs > 0),
        )
        identity = {"params": params_dump, "variant": variant, "split": split, "support": support_name}
        return fit(task, cfg, out, identity, ranks, losses_csv, stop_after_epoch, progress)
