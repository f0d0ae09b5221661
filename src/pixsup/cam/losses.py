"""Training losses: multi-label classification, RCM (regional contrast) and MAM (multi-scale attention).

Shapes: B images, C foreground classes, h x w the CAM grid, D embedding size.
Image labels are (B, C) multi-hot float tensors.

Under several processes each rank holds a slice of the global batch (``ranks``):
what mixes images (RCM's prototypes, the pixel counts that the RCM and MAM means
divide by) is summed over ranks, so every term is that of one process on the
global batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from ..runtime.distributed import Ranks

IGNORE_REGION = -1


def classification_loss(logits: Tensor, labels: Tensor) -> Tensor:
    """Multi-label soft margin loss of the pooled CAM scores."""
    return F.multilabel_soft_margin_loss(logits, labels)


def normalize_cam(cam: Tensor, labels: Tensor, eps: float = 1e-5) -> Tensor:
    """ReLU, zero the classes absent from the image label, divide each map by its spatial max.

    Differentiable; used for MainNet (with gradients) and SupportNet (without).
    """
    cam = F.relu(cam) * labels[:, :, None, None]
    peak = cam.flatten(2).max(dim=2).values[:, :, None, None]
    return cam / (peak + eps)


# ------------------------------------------------------------------- RCM


def region_labels(support_cam: Tensor, fg_threshold: float, bg_threshold: float, bg_margin: int = 0) -> Tensor:
    """Per-pixel region of a normalised SupportNet CAM (B, C, h, w) -> (B, h, w) long.

    Values: class id 1..C where ``max_c A >= fg_threshold``, 0 (background)
    where ``max_c A < bg_threshold``, ``IGNORE_REGION`` in between. With ``bg_margin``,
    a pixel below ``bg_threshold`` within that many cells (Chebyshev distance) of one at or
    above it is ignored too: a weak part of an object beside its lit part is not called background.
    """
    peak, cls = support_cam.max(dim=1)
    region = torch.full_like(cls, IGNORE_REGION)
    region[peak >= fg_threshold] = cls[peak >= fg_threshold] + 1
    background = peak < bg_threshold
    if bg_margin > 0:
        lit = (~background).float().unsqueeze(1)
        near_lit = F.max_pool2d(lit, 2 * bg_margin + 1, stride=1, padding=bg_margin).squeeze(1) > 0
        background &= ~near_lit
    region[background] = 0
    return region


def region_prototypes(
    support_proj: Tensor, region: Tensor, num_regions: int, ranks: Ranks = Ranks()
) -> tuple[Tensor, Tensor, Tensor]:
    """Masked average of SupportNet embeddings per region id (0 .. num_regions - 1) over the global batch.

    Returns (ids (P,) of the regions present, prototypes (P, D) unit length, the
    number of pixels with a region); ignored pixels do not count.
    """
    dim = support_proj.shape[1]
    flat = support_proj.permute(0, 2, 3, 1).reshape(-1, dim)
    flat_region = region.reshape(-1)
    valid = flat_region != IGNORE_REGION
    sums = torch.zeros(num_regions, dim, dtype=flat.dtype, device=flat.device)
    sums.index_add_(0, flat_region[valid], flat[valid])
    counts = ranks.sum(torch.bincount(flat_region[valid], minlength=num_regions))
    ids = counts.nonzero().squeeze(1)
    return ids, F.normalize(ranks.sum(sums)[ids], dim=1), counts.sum()


class PrototypeMemory:
    """Prototypes of the last ``size`` batches, offered as extra negatives for absent regions."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._batches: list[tuple[Tensor, Tensor]] = []

    def push(self, ids: Tensor, prototypes: Tensor) -> None:
        if self.size == 0:
            return
        self._batches.append((ids.detach(), prototypes.detach()))
        del self._batches[: -self.size]

    def state_dict(self) -> list[tuple[Tensor, Tensor]]:
        """The stored (ids, prototypes) batches, for a resume checkpoint."""
        return [(ids.cpu(), prototypes.cpu()) for ids, prototypes in self._batches]

    def load_state_dict(self, batches: list[tuple[Tensor, Tensor]], device: torch.device) -> None:
        self._batches = [(ids.to(device), prototypes.to(device)) for ids, prototypes in batches]

    def negatives(self, present: Tensor) -> Tensor | None:
        """Stored prototypes whose region id is not in ``present`` (the current positives' ids)."""
        kept = [p[~torch.isin(i, present)] for i, p in self._batches]
        kept = [p for p in kept if len(p)]
        return torch.cat(kept) if kept else None


def rcm_loss(
    main_proj: Tensor,
    support_proj: Tensor,
    support_cam: Tensor,
    fg_threshold: float,
    bg_threshold: float,
    tau: float,
    memory: PrototypeMemory | None = None,
    ranks: Ranks = Ranks(),
    bg_margin: int = 0,
) -> Tensor:
    """Pixel-to-prototype InfoNCE.

    Each non-ignored MainNet pixel embedding (regions of :func:`region_labels`) is pulled to the
    prototype of its SupportNet region and pushed from the other prototypes of the batch (and
    memory). Returns 0 (with a graph) when no pixel of the batch has a region.
    """
    region = region_labels(support_cam, fg_threshold, bg_threshold, bg_margin)
    ids, prototypes, pixels_with_region = region_prototypes(support_proj, region, support_cam.shape[1] + 1, ranks)
    flat_region = region.reshape(-1)
    valid = flat_region != IGNORE_REGION
    if pixels_with_region == 0:
        return main_proj.sum() * 0.0
    dim = main_proj.shape[1]
    pixels = main_proj.permute(0, 2, 3, 1).reshape(-1, dim)[valid]
    target = torch.searchsorted(ids, flat_region[valid])
    candidates = prototypes
    if memory is not None:
        extra = memory.negatives(ids)
        if extra is not None:
            candidates = torch.cat([prototypes, extra])
        memory.push(ids, prototypes)
    logits = pixels @ candidates.t() / tau
    return ranks.share_of_mean(F.cross_entropy(logits, target, reduction="sum"), pixels_with_region)


# ------------------------------------------------------------------- MAM


def resize_to(x: Tensor, size: Sequence[int]) -> Tensor:
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def mam_target(
    main_cam: Tensor,
    support_cams: Sequence[Tensor],
    fusion: str = "attention",
    temperature: float = 2.0,
    dissimilarity: str = "abs",
) -> tuple[Tensor, Tensor]:
    """Fuse normalised SupportNet CAMs of several scales into MainNet's target.

    Args:
        main_cam: normalised MainNet CAM ``M`` (B, C, h, w).
        support_cams: normalised SupportNet CAMs ``S_s`` already on MainNet's grid.
        fusion: ``attention`` (softmax over scales of the dissimilarity / T),
            ``max`` or ``mean``.
        dissimilarity: ``abs`` = ``|M - S_s|``; ``expand`` = ``relu(S_s - M)``,
            which only rewards scales that see object where MainNet does not.

    Returns:
        (target ``Y`` (B, C, h, w), attention weights (S, B, C, h, w)); both detached.
    """
    stack = torch.stack([s.detach() for s in support_cams])
    main = main_cam.detach().unsqueeze(0)
    if fusion == "attention":
        if dissimilarity == "abs":
            dis = (main - stack).abs()
        elif dissimilarity == "expand":
            dis = F.relu(stack - main)
        else:
            raise ValueError(f"unknown MAM dissimilarity '{dissimilarity}' (abs | expand)")
        weights = torch.softmax(dis / temperature, dim=0)
    elif fusion == "max":
        weights = F.one_hot(stack.argmax(dim=0), len(support_cams)).movedim(-1, 0).to(stack.dtype)
    elif fusion == "mean":
        weights = torch.full_like(stack, 1.0 / len(support_cams))
    else:
        raise ValueError(f"unknown MAM fusion '{fusion}' (attention | max | mean)")
    return (weights * stack).sum(dim=0), weights


def mam_loss(
    main_cam: Tensor,
    target: Tensor,
    labels: Tensor,
    one_sided: bool = False,
    bg_weight: float = 0.0,
    bg_threshold: float = 0.05,
    ranks: Ranks = Ranks(),
) -> Tensor:
    """L1 between MainNet's normalised CAM and the fused target, over label classes and pixels.

    ``one_sided`` penalises only ``M < Y`` (pure expansion). ``bg_weight`` adds a
    counterweight that holds ``M`` at zero where the target is confident
    background (``Y < bg_threshold``), so expansion cannot leak there.
    """
    diff = F.relu(target - main_cam) if one_sided else (main_cam - target).abs()
    mask = labels[:, :, None, None].expand_as(diff)
    denom = ranks.sum(mask.sum()).clamp_min(1.0)  # label classes x pixels of the global batch
    loss = ranks.share_of_mean((diff * mask).sum(), denom)
    if bg_weight > 0:
        leak = main_cam * (target < bg_threshold).to(main_cam.dtype)
        loss = loss + ranks.share_of_mean(bg_weight * (leak * mask).sum(), denom)
    return loss
