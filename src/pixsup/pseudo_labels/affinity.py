"""Pixel pairs within a radius on the stride-4 grid, the line between them, and their affinities.

Both IRN's training (affinity labels from confident labels) and its random walk
(affinities from the predicted boundary map) use the same neighbourhood: every
offset ``(dy, dx)`` with ``0 < dy^2 + dx^2 < radius^2``. The affinity of a pair is
``1 - max(boundary)`` over the grid points on the straight line between them
(both ends included), so a boundary anywhere between two pixels separates them.
"""

from __future__ import annotations

from functools import cache

import numpy as np
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
def line_points(dy: int, dx: int) -> tuple[tuple[int, int], ...]:
    """Grid points from (0, 0) to (dy, dx) along the straight line, both ends included."""
    steps = max(abs(dy), abs(dx))
    points = []
    for k in range(steps + 1):
        point = (int(round(dy * k / steps)), int(round(dx * k / steps)))
        if point not in points:
            points.append(point)
    return tuple(points)


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
        ``1 - max(boundary on the line)``; 0 where the neighbour lies outside the map.
    """
    out = []
    for dy, dx in offsets:
        # Outside the map counts as a full boundary, so such pairs get affinity 0.
        path_max = torch.stack([_shifted(boundary, py, px, 1.0) for py, px in line_points(dy, dx)]).amax(0)
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
    over the global batch (this rank's share of each mean when several processes train)."""

    def mean_over(mask: Tensor, values: Tensor) -> Tensor:
        return ranks.share_of_mean((values * mask).sum(), ranks.sum(mask.sum()).clamp(min=1))

    bg = mean_over(targets["bg_pos"], -torch.log(affinity + eps))
    fg = mean_over(targets["fg_pos"], -torch.log(affinity + eps))
    neg = mean_over(targets["neg"], -torch.log(1.0 + eps - affinity))
    return {"loss": bg / 2 + fg / 2 + neg, "bg_pos": bg, "fg_pos": fg, "neg": neg}


def downsample_labels(labels: np.ndarray, stride: int) -> np.ndarray:
    """Nearest-neighbour label map on the stride grid (the pixel at each cell's top-left corner)."""
    return labels[::stride, ::stride]
