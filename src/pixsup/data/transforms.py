"""Paired image/label augmentation driven by an explicit random generator.

Every transform is called as ``transform(image, label, rng)`` with a uint8
``H x W x 3`` image, an optional uint8 ``H x W`` label map (None for
classification-only training) and a ``numpy.random.Generator``. No global
random state is touched, so a sample's augmentation depends only on the
generator the dataset seeds per (seed, epoch, index).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np
import torch
from PIL import Image, ImageEnhance

from ..config import AugmentConfig
from .voc_format import IGNORE_INDEX

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
# The mean as a uint8 colour: padding with it gives (about) 0 after normalisation.
MEAN_COLOUR: tuple[int, int, int] = tuple(round(255 * channel) for channel in IMAGENET_MEAN)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

Pair = tuple[np.ndarray, "np.ndarray | None"]


class PairTransform(Protocol):
    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair: ...


class Compose:
    """Apply transforms in order, threading the same generator through all of them."""

    def __init__(self, transforms: Sequence[PairTransform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        for transform in self.transforms:
            image, label = transform(image, label, rng)
        return image, label


class RandomResizeLong:
    """Resize so the long side is a random integer in ``[lo, hi]`` (aspect kept).

    Images use bilinear interpolation; labels use nearest so class ids stay ids.
    """

    def __init__(self, lo: int, hi: int) -> None:
        if not 1 <= lo <= hi:
            raise ValueError(f"RandomResizeLong needs 1 <= lo <= hi, got [{lo}, {hi}]")
        self.lo, self.hi = lo, hi

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        height, width = image.shape[:2]
        scale = int(rng.integers(self.lo, self.hi + 1)) / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))  # PIL wants (w, h)
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        if label is not None:
            label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
        return image, label


class RandomScale:
    """Resize by a random factor in ``[lo, hi]`` (bilinear for images, nearest for labels)."""

    def __init__(self, lo: float, hi: float) -> None:
        if not 0 < lo <= hi:
            raise ValueError(f"RandomScale needs 0 < lo <= hi, got [{lo}, {hi}]")
        self.lo, self.hi = lo, hi

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        scale = float(rng.uniform(self.lo, self.hi))
        height, width = image.shape[:2]
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
        if label is not None:
            label = np.asarray(Image.fromarray(label).resize(size, Image.NEAREST))
        return image, label


class RandomHorizontalFlip:
    """Mirror image and label together with probability ``p``."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        if rng.random() < self.p:
            image = np.ascontiguousarray(image[:, ::-1])
            if label is not None:
                label = np.ascontiguousarray(label[:, ::-1])
        return image, label


class ColorJitter:
    """Random brightness, contrast, saturation and hue, in a random order; image only.

    Factors follow torchvision's convention: brightness/contrast/saturation
    draw from ``[max(0, 1 - s), 1 + s]``; hue shifts by a fraction in
    ``[-hue, hue]`` of the colour wheel. A strength of 0 disables that part.
    """

    def __init__(
        self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0, hue: float = 0.0
    ) -> None:
        if not 0.0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
        self.strengths = (brightness, contrast, saturation, hue)

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        pil = Image.fromarray(image)
        for which in rng.permutation(4):
            strength = self.strengths[which]
            if strength <= 0:
                continue
            if which == 3:
                pil = _shift_hue(pil, float(rng.uniform(-strength, strength)))
            else:
                enhancer = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)[which]
                pil = enhancer(pil).enhance(float(rng.uniform(max(0.0, 1.0 - strength), 1.0 + strength)))
        return np.asarray(pil), label


def _shift_hue(image: Image.Image, shift: float) -> Image.Image:
    hsv = np.array(image.convert("HSV"))
    # uint8 arithmetic wraps modulo 256, which is exactly a rotation of the hue wheel.
    hsv[..., 0] += np.uint8(round(shift * 255) % 256)
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


class RandomCrop:
    """A random ``size`` x ``size`` window, as IRN's ``imutils.random_crop``: along a side longer than
    ``size`` the window starts at a random offset; along a shorter one the image is placed at a random
    offset inside the window. The rest is the ImageNet mean colour (0 once normalised, IRN's and
    DeepLab's padding) for images and 255 (ignored) for labels."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: np.random.Generator) -> Pair:
        placed = []  # per axis: (slice of the source, slice of the window)
        for side in image.shape[:2]:
            spare = side - self.size
            if spare >= 0:
                start = int(rng.integers(0, spare + 1))
                placed.append((slice(start, start + self.size), slice(0, self.size)))
            else:
                start = int(rng.integers(0, -spare + 1))
                placed.append((slice(0, side), slice(start, start + side)))
        source = (placed[0][0], placed[1][0])
        window = (placed[0][1], placed[1][1])
        image_out = np.empty((self.size, self.size, image.shape[2]), image.dtype)
        image_out[...] = MEAN_COLOUR
        image_out[window] = image[source]
        if label is not None:
            label_out = np.full((self.size, self.size), IGNORE_INDEX, label.dtype)
            label_out[window] = label[source]
            label = label_out
        return image_out, label


def shrink_to_max_side(image: np.ndarray, max_side: int) -> np.ndarray:
    """A uint8 image whose long side exceeds ``max_side`` shrunk to it (antialiased, aspect kept); others as they are.

    Inference steps work at this size, so that their memory does not grow with a large photo."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image
    shrink = max_side / max(height, width)
    size = (max(1, round(width * shrink)), max(1, round(height * shrink)))
    return np.asarray(Image.fromarray(image).resize(size, Image.Resampling.BILINEAR))


def normalize_image(image: np.ndarray) -> torch.Tensor:
    """uint8 ``H x W x 3`` -> float32 ``3 x H x W`` tensor standardised with ImageNet mean/std."""
    # Convert on the numpy side: decoded images may be read-only views.
    tensor = torch.from_numpy(image.astype(np.float32)).permute(2, 0, 1).div_(255.0)
    mean, std = _mean_std()
    return tensor.sub_(mean).div_(std)


def denormalize(tensor: torch.Tensor) -> np.ndarray:
    """Inverse of :func:`normalize_image`, for figures: ``3 x H x W`` -> uint8 ``H x W x 3``."""
    mean, std = _mean_std()
    image = (tensor.detach().cpu().float() * std + mean).mul(255.0).round().clamp(0, 255)
    return image.to(torch.uint8).permute(1, 2, 0).numpy()


def _mean_std() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)


def build_train_transform(augment_cfg: AugmentConfig) -> Compose:
    """The training augmentation: resize-long, flip, colour jitter, random crop.

    Args:
        augment_cfg: The ``cam_train.augment`` section.

    Returns:
        A :class:`Compose` producing uint8 ``crop_size`` x ``crop_size`` images
        (normalise afterwards with :func:`normalize_image`).
    """
    transforms: list[PairTransform] = [RandomResizeLong(*augment_cfg.resize_long)]
    if augment_cfg.flip:
        transforms.append(RandomHorizontalFlip())
    jitter = (augment_cfg.brightness, augment_cfg.contrast, augment_cfg.saturation, augment_cfg.hue)
    if any(jitter):
        transforms.append(ColorJitter(*jitter))
    transforms.append(RandomCrop(augment_cfg.crop_size))
    return Compose(transforms)
