"""IRN's random walk, memory-bounded: the transition never becomes an (HW x HW) matrix.

IRN builds a dense affinity matrix ``A`` over the stride-4 grid (self-affinity
1, neighbours within ``radius`` from the boundary map: ``1 - max(boundary)``
over the pair's path cells, 0 elsewhere), raises it to ``beta``, normalises
columns into ``T`` and squares ``T`` ``exp_times`` times:
``rw = x @ T^(2^exp_times)``. For a 500x375 image that is an
11,750 x 11,750 matrix (550 MB in fp32) multiplied by itself eight times.

Here ``T`` is kept as one affinity map per neighbour offset (P maps of H x W),
and ``x`` is multiplied by ``T`` ``2^exp_times`` times, each product a sum of P
shifted maps. The result is the same vector (it is the same product taken in
another order); memory grows with pixels x neighbours, not pixels squared.
:func:`dense_random_walk` is IRN's formulation, kept as the baseline the
benchmark compares against; the tests check both against a reference of their own.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from .affinity import _shifted, neighbour_offsets, pair_affinities


def _half_affinities(boundary: Tensor, radius: int, beta: float) -> tuple[tuple[tuple[int, int], ...], Tensor]:
    offsets = neighbour_offsets(radius, half=True)
    return offsets, pair_affinities(boundary, offsets).pow(beta)


def random_walk(x: Tensor, boundary: Tensor, radius: int = 5, beta: float = 10.0, exp_times: int = 8) -> Tensor:
    """Propagate score maps along the boundary-aware affinities.

    Args:
        x: (K, H, W) scores (CAMs already multiplied by ``1 - boundary``).
        boundary: (H, W) boundary probabilities in [0, 1] on the same grid.
        radius: neighbourhood radius of the affinities.
        beta: affinity exponent (sharpens the transition).
        exp_times: the walk takes ``2 ** exp_times`` steps.

    Returns:
        (K, H, W) propagated scores, equal to ``x @ T^(2^exp_times)`` of IRN.
    """
    channels, height, width = x.shape
    side = 2 * radius - 1
    offsets, weights = _half_affinities(boundary, radius, beta)  # weights[o][p] = A[p, p + o]
    # One weight map per position of a (side x side) window around each pixel, zero outside the
    # radius: the window centre is the pixel itself (A[p, p] = 1), and each pair appears from both
    # of its ends (A[p, p - o] = weights[o][p - o]).
    window = torch.zeros(side, side, height, width, dtype=x.dtype)
    window[radius - 1, radius - 1] = 1.0
    for i, (dy, dx) in enumerate(offsets):
        window[radius - 1 + dy, radius - 1 + dx] = weights[i]
        window[radius - 1 - dy, radius - 1 - dx] = _shifted(weights[i], -dy, -dx, 0.0)
    window = window.reshape(side * side, height * width)
    transition = window / window.sum(0, keepdim=True)  # column sums of the symmetric A
    y = x.reshape(channels, 1, height, width)
    for _ in range(2**exp_times):
        neighbours = F.unfold(y, kernel_size=side, padding=radius - 1)  # (K, side*side, H*W)
        y = (neighbours * transition).sum(1).reshape(channels, 1, height, width)
    return y.reshape(channels, height, width)


def dense_transition(boundary: Tensor, radius: int = 5, beta: float = 10.0) -> Tensor:
    """IRN's dense column-normalised transition matrix (HW x HW); the reference, not for real images."""
    height, width = boundary.shape
    offsets, weights = _half_affinities(boundary, radius, beta)
    size = height * width
    affinity = torch.eye(size, dtype=boundary.dtype)
    index = torch.arange(size).view(height, width)
    for i, (dy, dx) in enumerate(offsets):
        rows = index[max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)].reshape(-1)
        cols = index[max(dy, 0) : height + min(dy, 0), max(dx, 0) : width + min(dx, 0)].reshape(-1)
        values = weights[i][max(-dy, 0) : height - max(dy, 0), max(-dx, 0) : width - max(dx, 0)].reshape(-1)
        affinity[rows, cols] = values
        affinity[cols, rows] = values
    return affinity / affinity.sum(0, keepdim=True)


def dense_random_walk(x: Tensor, boundary: Tensor, radius: int = 5, beta: float = 10.0, exp_times: int = 8) -> Tensor:
    """IRN's formulation: square the dense transition ``exp_times`` times, then one product."""
    transition = dense_transition(boundary, radius, beta)
    for _ in range(exp_times):
        transition = transition @ transition
    channels, height, width = x.shape
    return (x.reshape(channels, -1) @ transition).reshape(channels, height, width)
