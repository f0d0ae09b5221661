"""The source dataset the ``tiny`` backbone is pretrained on: what ImageNet is to the ResNets.

Why it exists: in real WSSS a less discriminative region (a cat's fur) is already
close in feature space to the rest of the object before any VOC training, because
ImageNet taught the backbone the textures and parts objects are made of. The
target dataset (:mod:`pixsup.data.synthetic`) paints every body with fine stripes
at a random angle, identical for all classes; a backbone trained from scratch on
the target only needs the badge and never learns to see them. This dataset teaches
textures as classes, so the pretrained features of a body's pixels are those of
its stripes: the same all over the body (and around its badge, which the
receptive field of a badge pixel covers), and unlike the smooth background. The
mechanism is in docs/synthetic-data.md.

Each image is one object on the target's background: one or two parts (the
target's shapes, each its own random colour) filled with the class's texture. The
class is the texture alone (:data:`TEXTURES`, 24 of them); colour, shape, size and
position carry nothing. The target's stripes (period 3 to 6 px, any angle) are
covered by the fine-stripe classes, which sample the angle around their own.

Images are drawn, never stored: image ``k`` of epoch ``e`` comes from
``np.random.default_rng([seed, stream, e, k])`` (stream 0 trains, stream 1 is the
held-out set), so every epoch sees new images and the same config gives the same
ones on any machine.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from ..config import SourceDataConfig
from .synthetic import BODY_SATURATION, BODY_VALUE, NOISE_STD, STRIPE_PERIOD, draw_background, draw_shape, hsv_colour
from .transforms import normalize_image

TRAIN_STREAM = 0
HELD_OUT_STREAM = 1

_FINE = STRIPE_PERIOD  # the target's stripe periods
_COARSE = (7.0, 12.0)
_AMPLITUDE = (0.08, 0.3)  # texture strength relative to the colour; the target's stripes are 0.1
_PART_SCALE = (0.35, 0.75)  # part box side / image side

Texture = Callable[[np.ndarray, np.ndarray, np.random.Generator], np.ndarray]


def _rotated(yy: np.ndarray, xx: np.ndarray, angle: float) -> tuple[np.ndarray, np.ndarray]:
    return xx * np.cos(angle) + yy * np.sin(angle), -xx * np.sin(angle) + yy * np.cos(angle)


def _stripes(angle_deg: float, periods: tuple[float, float]) -> Texture:
    def draw(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Within 22.5 degrees of the class angle: the four classes tile every orientation.
        u, _ = _rotated(yy, xx, np.deg2rad(angle_deg + rng.uniform(-22.5, 22.5)))
        return np.sin(2 * np.pi * u / rng.uniform(*periods) + rng.uniform(0, 2 * np.pi))

    return draw


def _checker(angle_deg: float, periods: tuple[float, float]) -> Texture:
    def draw(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u, v = _rotated(yy, xx, np.deg2rad(angle_deg))
        period = rng.uniform(*periods)
        return np.sign(np.sin(np.pi * u / period) * np.sin(np.pi * v / period))

    return draw


def _dots(periods: tuple[float, float]) -> Texture:
    def draw(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        period = rng.uniform(*periods)
        dy, dx = (
            (yy + rng.uniform(0, period)) % period - period / 2,
            (xx + rng.uniform(0, period)) % period - period / 2,
        )
        return np.where(dy**2 + dx**2 <= (0.3 * period) ** 2, 1.0, -0.4)

    return draw


def _rings(periods: tuple[float, float]) -> Texture:
    def draw(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        cy, cx = rng.uniform(yy.min(), yy.max()), rng.uniform(xx.min(), xx.max())
        return np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / rng.uniform(*periods))

    return draw


def _waves(angle_deg: float) -> Texture:
    def draw(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u, v = _rotated(yy, xx, np.deg2rad(angle_deg))
        bend = rng.uniform(1.5, 3.0) * np.sin(2 * np.pi * v / rng.uniform(10.0, 16.0))
        return np.sin(2 * np.pi * (u + bend) / rng.uniform(4.0, 7.0))

    return draw


def _crosshatch(angle_deg: float) -> Texture:
    def draw(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        u, v = _rotated(yy, xx, np.deg2rad(angle_deg))
        period = rng.uniform(4.0, 8.0)
        return np.maximum(np.cos(2 * np.pi * u / period), np.cos(2 * np.pi * v / period)) * 2.0 - 1.0

    return draw


def _blotches(cell: tuple[int, int]) -> Texture:
    def draw(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        # Random values on a coarse grid, enlarged without smoothing: a patchwork of flat cells.
        size = int(rng.integers(*cell))
        rows, cols = ((yy - yy.min()) // size).astype(int), ((xx - xx.min()) // size).astype(int)
        return rng.uniform(-1.0, 1.0, size=(rows.max() + 1, cols.max() + 1))[rows, cols]

    return draw


def _grain(yy: np.ndarray, xx: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1.0, 1.0, size=yy.shape)


# The source classes: name -> texture. Index i of this table is class i.
TEXTURES: dict[str, Texture] = {
    **{f"stripes_fine_{a}": _stripes(a, _FINE) for a in (0, 45, 90, 135)},
    **{f"stripes_coarse_{a}": _stripes(a, _COARSE) for a in (0, 45, 90, 135)},
    **{
        f"checker_{size}_{a}": _checker(a, p)
        for size, p in (("fine", (3.0, 5.0)), ("coarse", (6.0, 10.0)))
        for a in (0, 45)
    },
    "dots_fine": _dots((4.0, 6.0)),
    "dots_coarse": _dots((7.0, 11.0)),
    "rings_fine": _rings(_FINE),
    "rings_coarse": _rings(_COARSE),
    "waves_0": _waves(0),
    "waves_90": _waves(90),
    "crosshatch_0": _crosshatch(0),
    "crosshatch_45": _crosshatch(45),
    "blotches_fine": _blotches((3, 5)),
    "blotches_coarse": _blotches((6, 10)),
    "grain": _grain,
    "plain": lambda yy, xx, rng: np.zeros(yy.shape),
}
NUM_SOURCE_CLASSES = len(TEXTURES)


def draw_source_image(cfg: SourceDataConfig, stream: int, epoch: int, index: int) -> tuple[np.ndarray, int]:
    """Image ``index`` of ``epoch`` of ``stream``: ``(image (S, S, 3) uint8, class index)``."""
    rng = np.random.default_rng([cfg.seed, stream, epoch, index])
    side = cfg.image_size
    class_index = int(rng.integers(NUM_SOURCE_CLASSES))
    texture = list(TEXTURES.values())[class_index]
    image = draw_background(rng, side, side)
    amplitude = rng.uniform(*_AMPLITUDE)
    for _ in range(rng.integers(1, 3)):
        h, w = (max(8, round(rng.uniform(*_PART_SCALE) * side)) for _ in range(2))
        top, left = int(rng.integers(0, side - h + 1)), int(rng.integers(0, side - w + 1))
        shape = draw_shape(int(rng.integers(3)), h, w, rng)
        yy, xx = np.mgrid[top : top + h, left : left + w].astype(float)
        colour = hsv_colour(rng.random(), BODY_SATURATION, BODY_VALUE) * rng.uniform(0.92, 1.08)
        fill = colour * (1.0 + amplitude * texture(yy, xx, rng))[..., None]
        box = image[top : top + h, left : left + w]
        box[shape] = fill[shape]
    image = image + rng.normal(0.0, NOISE_STD, image.shape)
    if rng.random() < 0.5:
        image = image[:, ::-1]
    return np.rint(np.clip(image, 0, 255)).astype(np.uint8), class_index


class SourcePartsDataset(Dataset):
    """``images`` source images per epoch, drawn afresh each epoch (``set_epoch``) from ``stream``."""

    def __init__(self, cfg: SourceDataConfig, stream: int, images: int) -> None:
        self.cfg, self.stream, self.images, self.epoch = cfg, stream, images, 0

    def __len__(self) -> int:
        return self.images

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def identity(self) -> dict[str, Any]:
        """What the dataset is, for a resume checkpoint."""
        return {"source": self.cfg.model_dump(mode="json"), "stream": self.stream, "images": self.images}

    def __getitem__(self, i: int) -> dict[str, Any]:
        """``{"image": float32 3 x S x S normalised tensor, "target": int64 class index}``."""
        image, class_index = draw_source_image(self.cfg, self.stream, self.epoch, i)
        return {"image": normalize_image(image), "target": torch.tensor(class_index)}
