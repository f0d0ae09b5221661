"""Training a CAM network: the SupportNet (baseline) or a MainNet variant against a SupportNet.

Variants set which self-supervision terms are on:

=========  =====  =====
variant    RCM    MAM
=========  =====  =====
baseline   off    off
rcm        on     off
mam        off    on
full       on     on
=========  =====  =====

``L = L_cls + lambda_rcm * L_rcm + lambda_mam * L_mam`` with the lambdas of
``cam_train.rcm.weight`` / ``cam_train.mam.weight``. With a frozen SupportNet
(the default) MainNet starts from the SupportNet's weights; ``baseline`` with a
SupportNet checkpoint continues cls-only training from it, the same-budget
baseline row of the ablation.
"""

from __future__ import annotations

import csv
import io as _io
import logging
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn
from tqdm import tqdm

from .checkpoints import CheckpointError, load_cam_net, save_cam_net
from .config import CamTrainConfig
from .data.datasets import CamTrainDataset
from .distributed import Ranks, process_group
from .io import write_text
from .losses import (PrototypeMemory, classification_loss, mam_loss, mam_target, normalize_cam, rcm_loss,
                     resize_to)
from .models import CamNet, create_model
from .models.support import SupportNet
from .training import (autocast_for, epoch_loader, load_resume, resolve_device, resume_path, save_resume,
                       seed_everything, sgd_poly)

log = logging.getLogger(__name__)

VARIANTS: dict[str, tuple[bool, bool]] = {
    "baseline": (False, False),
    "rcm": (True, False),
    "mam": (False, True),
    "full": (True, True),
}
LOSS_COLUMNS = ("epoch", "iteration", "lr", "loss", "cls", "rcm", "mam")





def _support_cams_at_scales(support: SupportNet, images: Tensor, labels: Tensor, support_cam: Tensor,
                            scales: tuple[float, ...]) -> list[Tensor]:
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


def compute_losses(main: nn.Module, support: SupportNet | None, images: Tensor, labels: Tensor,
                   cfg: CamTrainConfig, use_rcm: bool, use_mam: bool,
                   memory: PrototypeMemory | None = None, ranks: Ranks = Ranks()) -> dict[str, Tensor]:
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
        scaled = (_support_cams_at_scales(support, images, labels, support_cam, cfg.mam.scales)
                  if use_mam or multiscale_regions else None)
        if use_rcm:
            r = cfg.rcm
            # A sparse SupportNet CAM calls most of an object background; the
            # union over scales keeps the less discriminative parts out of it.
            region_cam = torch.stack(scaled).amax(dim=0) if multiscale_regions else support_cam
            terms["rcm"] = rcm_loss(out["proj"].float(), support_out["proj"].float(), region_cam,
                                    r.fg_threshold, r.bg_threshold, r.tau, memory, ranks)
        if use_mam:
            m = cfg.mam
            target, _ = mam_target(main_cam, scaled, m.fusion, m.temperature, m.dissimilarity)
            terms["mam"] = mam_loss(main_cam, target, labels, m.one_sided, m.bg_weight, m.bg_threshold, ranks)
    terms["loss"] = terms["cls"] + cfg.rcm.weight * terms["rcm"] + cfg.mam.weight * terms["mam"]
    return terms




def _losses_csv(rows: list[dict[str, float]]) -> str:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=LOSS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _build_networks(cfg: CamTrainConfig, variant: str, support_ckpt: str | os.PathLike | None
                    ) -> tuple[CamNet, SupportNet | None]:
    use_rcm, use_mam = VARIANTS[variant]
    if support_ckpt is not None:
        main, state = load_cam_net(support_ckpt)
        if state["backbone"] != cfg.backbone:
            raise CheckpointError(
                f"{support_ckpt}: SupportNet backbone '{state['backbone']}' differs from "
                f"cam_train.backbone '{cfg.backbone}'")
    else:
        main = create_model(cfg.backbone, proj_dim=cfg.proj_dim, pretrained=cfg.pretrained)
    support = None
    if use_rcm or use_mam:
        if cfg.support.kind == "frozen" and support_ckpt is None:
            raise ValueError(
                f"variant '{variant}' with support.kind: frozen needs the trained SupportNet "
                "(the baseline checkpoint): pass --support")
        support = SupportNet(main, cfg.support.kind, cfg.support.ema_momentum)
    return main, support


def train_cam(cfg: CamTrainConfig, root: str | os.PathLike, split: str, variant: str, out: str | os.PathLike,
              support_ckpt: str | os.PathLike | None = None, losses_csv: str | os.PathLike | None = None,
              cls_labels: dict[str, np.ndarray] | None = None, device: str = "auto",
              stop_after_epoch: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Train one CAM network and write ``out`` (final weights) and ``losses_csv``.

    A checkpoint ``<out>.resume.pt`` is written after every epoch; when it exists
    at start (and was written with the same params), training resumes from it
    and ends with the same weights as an uninterrupted run. ``stop_after_epoch``
    ends the run early after that epoch, leaving only the resume checkpoint.

    Started by a launcher as several processes (:mod:`pixsup.distributed`), each
    trains on its slice of every global batch of ``cfg.batch_size`` images and
    only rank 0 writes files; the result is that of one process.

    Returns a summary dict (epochs, iterations, seconds, final loss terms).
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant '{variant}' ({' | '.join(VARIANTS)})")
    out = Path(out)
    losses_csv = Path(losses_csv) if losses_csv else out.with_name(out.name + ".losses.csv")
    use_rcm, use_mam = VARIANTS[variant]
    torch.use_deterministic_algorithms(cfg.deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not cfg.deterministic
    seed_everything(cfg.seed)

    with process_group(resolve_device(device)) as ranks:
        dev = ranks.device
        ranks.per_rank_batch(cfg.batch_size, "cam_train.batch_size")
        dataset = CamTrainDataset(root, split, cfg.augment, cfg.seed, cls_labels=cls_labels)
        if len(dataset) < cfg.batch_size:
            raise ValueError(f"split '{split}' has {len(dataset)} images, fewer than batch_size {cfg.batch_size}")
        main, support = _build_networks(cfg, variant, support_ckpt)
        main.to(dev)
        if support is not None:
            support.to(dev)
        if dev.type == "cuda":
            main.to(memory_format=torch.channels_last)
        backbone_params, head_params = main.param_groups()
        iters_per_epoch = len(dataset) // cfg.batch_size
        optimizer, scheduler = sgd_poly(
            [{"params": backbone_params, "lr": cfg.lr}, {"params": head_params, "lr": cfg.lr * cfg.head_lr_mult}],
            cfg.momentum, cfg.weight_decay, cfg.epochs * iters_per_epoch, cfg.poly_power)
        memory = PrototypeMemory(cfg.rcm.memory) if use_rcm else None

        params_dump = cfg.model_dump(mode="json")
        identity = {"params": params_dump, "variant": variant, "split": split,
                    "support": str(support_ckpt) if support_ckpt else None}
        start_epoch, rows, state = load_resume(out, identity, main, optimizer, scheduler)
        if support is not None and state.get("support") is not None:
            support.net.load_state_dict(state["support"])
        if memory is not None and state.get("memory") is not None:
            memory.load_state_dict(state["memory"], dev)
        # The projection head gets no gradient without RCM, or while an EMA SupportNet warms up.
        warming_up = cfg.support.kind == "ema" and cfg.warmup_epochs > 0
        model = ranks.wrap(main, unused_parameters=not use_rcm or warming_up)

        amp = autocast_for(dev)
        started = time.perf_counter()
        for epoch in range(start_epoch, cfg.epochs):
            dataset.set_epoch(epoch)
            loader = epoch_loader(dataset, cfg.batch_size, cfg.seed, epoch, cfg.num_workers, ranks)
            # With an EMA SupportNet the self-supervision waits for a sensible teacher.
            aux_on = cfg.support.kind == "frozen" or epoch >= cfg.warmup_epochs
            model.train()
            bar = tqdm(loader, desc=f"{variant} epoch {epoch + 1}/{cfg.epochs}",
                       disable=not progress or not ranks.is_main, leave=False)
            for batch in bar:
                images = batch["image"].to(dev, non_blocking=True)
                labels = batch["label"].to(dev, non_blocking=True)
                if dev.type == "cuda":
                    images = images.contiguous(memory_format=torch.channels_last)
                with amp:
                    terms = compute_losses(model, support, images, labels, cfg, use_rcm and aux_on,
                                           use_mam and aux_on, memory, ranks)
                optimizer.zero_grad(set_to_none=True)
                terms["loss"].backward()
                optimizer.step()
                scheduler.step()
                if support is not None:
                    support.update(main)
                row = {"epoch": epoch, "iteration": scheduler.last_epoch, "lr": optimizer.param_groups[0]["lr"]}
                row.update(ranks.mean_over_ranks({k: terms[k] for k in ("loss", "cls", "rcm", "mam")}))
                rows.append(row)
                bar.set_postfix(loss=f"{row['loss']:.3f}", cls=f"{row['cls']:.3f}")
            log.info("epoch %d/%d: loss %.4f (cls %.4f rcm %.4f mam %.4f)", epoch + 1, cfg.epochs,
                     *(np.mean([r[k] for r in rows if r["epoch"] == epoch]) for k in ("loss", "cls", "rcm", "mam")))
            ranks.check_identical(main, "the CAM network")
            if support is not None and support.kind == "ema":
                ranks.check_identical(support.net, "the EMA SupportNet")
            if ranks.is_main:
                save_resume(out, identity, epoch + 1, rows, main, optimizer, scheduler,
                            support=support.net.state_dict() if support is not None and support.kind == "ema"
                            else None, memory=memory.state_dict() if memory is not None else None)
                write_text(losses_csv, _losses_csv(rows))
            ranks.barrier()
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < cfg.epochs:
                log.info("stopping after epoch %d as asked; rerun to resume", epoch + 1)
                return {"finished": False, "epochs_done": epoch + 1}

        if ranks.is_main:
            save_cam_net(out, main.cpu(), cfg.backbone, cfg.proj_dim,
                         {"variant": variant, "params": params_dump, "support": identity["support"]})
            write_text(losses_csv, _losses_csv(rows))
            resume_path(out).unlink(missing_ok=True)
        ranks.barrier()
    final = {k: float(np.mean([r[k] for r in rows if r["epoch"] == cfg.epochs - 1]))
             for k in ("loss", "cls", "rcm", "mam")}
    return {"finished": True, "epochs_done": cfg.epochs, "iterations": len(rows), "processes": ranks.world_size,
            "seconds_this_run": round(time.perf_counter() - started, 2), "final_epoch_losses": final}
