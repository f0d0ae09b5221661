"""Pixel pairs within a radius on the stride-4 grid, the cells between them, and their affinities.

Both IRN's training (affinity labels from confident labels) and its random walk
(affinities from the predicted boundary map) use the same neighbourhood: every
offset ``(dy, dx)`` with ``0 < dy^2 + dx^2 < radius^2``. The affinity of a pair is
``1 - max(boundary)`` over the pair's path cells (:func:`path_cells`, as in IRN): a
band about two cells wide around the segment between them, both ends included, so
a boundary anywhere between two pixels separates them, a one-cell diagonal one too.
"""

from __future__ import annotations

from functools import cache

import torch
from torch import Tensor

from ..runtime.distributed import Ranks

IGNORE = 255


@cache
def neighbour_offsets(radius: int, half: bool = False) -> tuple[tuple[int, int], ...]:
    """Offsets within ``radius`` (exclusive), without (0, 0); ``half`` keeps one of each +/- pair."""
    offsets = []
    for dy in range(-radius + 1, radius):
        for dx in range(-radius + 1, radius):
            if 0 < dy * dy + dx * dx < radius * radius:
                if half and (dy < 0 or (dy == 0 and dx < 0)):
                    continue
                offsets.append((dy, dx))
    return tuple(offsets)


@cache
def path_cells(dy: int, dx: int) -> tuple[tuple[int, int], ...]:
    """IRN's path cells of the offset (dy, dx), in (y, x) order: the cells of the box spanned by (0, 0) and
    (dy, dx), both included, whose squared distance to the line through them, ``(dy x - dx y)^2 / (dy^2 + dx^2)``,
    is below 1. The band is wide enough that no one-cell-wide wall, straight or diagonal, lies between the two
    ends without a cell of it on the path."""
    length_sq = dy * dy + dx * dx
    return tuple(
        (y, x)
        for y in range(min(0, dy), max(0, dy) + 1)
        for x in range(min(0, dx), max(0, dx) + 1)
        if (dy * x - dx * y) ** 2 < length_sq  # the distance test times length_sq: exact in integers
    )


def _shifted(x: Tensor, dy: int, dx: int, fill: float) -> Tensor:
    """``out[..., y, x] = x[..., y + dy, x + dx]`` with ``fill`` outside the map."""
    height, width = x.shape[-2:]
    out = torch.full_like(x, fill)
    if abs(dy) >= height or abs(dx) >= width:
        return out  # the shifted map lies wholly outside
    ys, yd = slice(max(dy, 0), height + min(dy, 0)), slice(max(-dy, 0), height + min(-dy, 0))
    xs, xd = slice(max(dx, 0), width + min(dx, 0)), slice(max(-dx, 0), width + min(-dx, 0))
    out[..., yd, xd] = x[..., ys, xs]
    return out


def pair_affinities(boundary: Tensor, offsets: tuple[tuple[int, int], ...]) -> Tensor:
    """Affinities (…, P, H, W) of each pixel with its neighbour at each offset.

    Args:
        boundary: (…, H, W) boundary probabilities in [0, 1].
        offsets: the neighbour offsets (P of them).

    Returns:
        ``1 - max(boundary on the path cells)``; 0 where the neighbour lies outside the map.
    """
    out = []
    for dy, dx in offsets:
        # Outside the map counts as a full boundary, so such pairs get affinity 0.
        path_max = torch.stack([_shifted(boundary, py, px, 1.0) for py, px in path_cells(dy, dx)]).amax(0)
        out.append(1.0 - path_max)
    return torch.stack(out, dim=-3)


def affinity_labels(labels: Tensor, offsets: tuple[tuple[int, int], ...]) -> dict[str, Tensor]:
    """Training targets of pairs from a label map (…, H, W) of class ids and 255 (unknown).

    Returns boolean masks (…, P, H, W): ``bg_pos`` (both background), ``fg_pos``
    (both the same foreground class) and ``neg`` (two different known labels).
    """
    pairs = torch.stack([_shifted(labels, dy, dx, IGNORE) for dy, dx in offsets], dim=-3)
    own = labels.unsqueeze(-3).expand_as(pairs)
    known = (own != IGNORE) & (pairs != IGNORE)
    same = known & (own == pairs)
    return {"bg_pos": same & (own == 0), "fg_pos": same & (own != 0), "neg": known & (own != pairs)}


def affinity_loss(
    affinity: Tensor, targets: dict[str, Tensor], eps: float = 1e-5, ranks: Ranks = Ranks()
) -> dict[str, Tensor]:
    """IRN's affinity loss: -log(a) on positive pairs, -log(1 - a) on negative pairs, each class of pair averaged
    over the global batch (this rank's share of each mean when several processes train); as IRN's train_irn,
    ``((bg_pos + fg_pos) / 2 + neg) / 2``."""

    def mean_over(mask: Tensor, values: Tensor) -> Tensor:
        return ranks.share_of_mean((values * mask).sum(), ranks.sum(mask.sum()).clamp(min=1))

    bg = mean_over(targets["bg_pos"], -torch.log(affinity + eps))
    fg = mean_over(targets["fg_pos"], -torch.log(affinity + eps))
    neg = mean_over(targets["neg"], -torch.log(1.0 + eps - affinity))
    return {"loss": ((bg + fg) / 2 + neg) / 2, "bg_pos": bg, "fg_pos": fg, "neg": neg}


def cell_labels(labels: Tensor, stride: int) -> Tensor:
    """Labels (..., H, W) on the stride grid (..., ceil(H / stride), ceil(W / stride)): each cell takes the
    pixel at its centre, ``stride * i + stride // 2`` (clamped inside the image), as IRN's PIL-nearest
    downscaling of the label crop does (pixel 4i + 2 at stride 4)."""

    def centres(side: int) -> Tensor:
        return (torch.arange(0, side, stride) + stride // 2).clamp(max=side - 1)

    return labels[..., centres(labels.shape[-2]), :][..., centres(labels.shape[-1])]
