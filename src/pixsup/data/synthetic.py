"""The embedded default dataset: "badge versus body" objects in the PASCAL VOC 2012 layout.

Why it exists: the whole pipeline must run on 2 CPU cores in minutes, and the
data must show the problem the method attacks. A plain classifier's class
activation maps are sparse: they fire on a small discriminative part, not on
the whole object. Here every object is a large BODY (ellipse, rectangle or
convex polygon) that carries its class colour only with probability
``body_class_colour_prob``, else a distractor colour from a pool shared by all
classes, so the body is at most a weak cue (by default none: its colour never
tells the class, see docs/design-study.md); and a small BADGE, a 2x2 code of inks fixed
per class, which identifies the class perfectly. A classifier learns the badge;
the segmentation target is the whole body.

Ids look like VOC ids. The train pool (``train`` = its first ``num_train``
images, ``train_aug`` = all of it) is ``2100_000001``, ``2100_000002``, ...;
``val`` is ``2101_000001``, ... Image ``k`` of a pool is drawn from
``np.random.default_rng([seed, pool, k])``, so it does not depend on how many
images are requested, and the same config gives byte-identical files.

Files under the output (a ``VOC2012`` folder): ``JPEGImages/<id>.jpg`` for every
id; ``SegmentationClass/<id>.png`` (palette PNG) for train and val;
``SegmentationClassAug/<id>.png`` (grayscale PNG) for train_aug and val, as in
the distributed SBD-augmented set; ``Annotations/<id>.xml`` for every id;
``ImageSets/Segmentation/{train,train_aug,val}.txt``; ``synthetic.json``.
"""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from ..config import SyntheticConfig
from ..files import save_jpeg, save_png, write_json, write_text
from .voc_format import (
    ANNOTATION_DIR,
    CLASS_NAMES,
    IGNORE_INDEX,
    JPEG_DIR,
    MASK_AUG_DIR,
    MASK_DIR,
    SPLIT_DIR,
    voc_palette,
    write_annotation_xml,
)

TRAIN_POOL = 0
VAL_POOL = 1
TEST_POOL = 2
_POOL_PREFIX = {TRAIN_POOL: "2100", VAL_POOL: "2101", TEST_POOL: "2102"}
_ID_PATTERN = re.compile(r"^210[012]_\d+$")
SUMMARY_FILE = "synthetic.json"

# Bodies are saturated, backgrounds muted: different in appearance, but the
# background still varies in hue and brightness, so the split is not trivial.
BODY_SATURATION = 0.8
BODY_VALUE = 0.85
_BACKGROUND_SATURATION = (0.05, 0.3)
_BACKGROUND_VALUE = (0.3, 0.8)
STRIPE_AMPLITUDE = 0.1  # the fine texture every body shares, relative to its colour
STRIPE_PERIOD = (3.0, 6.0)
NOISE_STD = 3.0
_MIN_BODY_SIDE = 8
_BADGE_MIN_SIDE = 6
# Badge codes depend on the number of classes only, never on the seed, so a
# class looks the same in every generated dataset.
_BADGE_CODE_SEED = 2100


@dataclass(frozen=True)
class SyntheticPalette:
    """The fixed colours of the dataset, a function of the number of classes only.

    Attributes:
        class_colours: (num_classes, 3) uint8; row ``c - 1`` is the body colour of class id ``c``.
        distractor_colours: (num_classes, 3) uint8; the pool of other body colours, shared by all
            classes, whose hues lie halfway between neighbouring class hues.
        badge_codes: (num_classes, 2, 2, 3) uint8; row ``c - 1`` is the 2x2 badge of class id ``c``.
    """

    class_colours: np.ndarray
    distractor_colours: np.ndarray
    badge_codes: np.ndarray


@dataclass(frozen=True)
class _Body:
    class_id: int
    top: int
    left: int
    shape: np.ndarray  # (h, w) bool, inside the body's box
    fill: np.ndarray  # (h, w, 3) float: colour times texture

    def footprint(self, height: int, width: int) -> np.ndarray:
        full = np.zeros((height, width), dtype=bool)
        h, w = self.shape.shape
        full[self.top : self.top + h, self.left : self.left + w] = self.shape
        return full


def hsv_colour(hue: float, saturation: float, value: float) -> np.ndarray:
    return np.array(colorsys.hsv_to_rgb(hue % 1.0, saturation, value)) * 255.0


def _badge_inks(num_classes: int) -> np.ndarray:
    # Black, white and two full-strength hues a quarter step off the class hues,
    # so no ink equals a class or distractor colour.
    offset = 0.25 / num_classes
    inks = [(16.0, 16.0, 16.0), (240.0, 240.0, 240.0), hsv_colour(offset, 1.0, 1.0), hsv_colour(0.5 + offset, 1.0, 1.0)]
    return np.rint(np.array(inks)).astype(np.uint8)


def _badge_codes(num_classes: int, num_inks: int) -> np.ndarray:
    """Ink indices (num_classes, 2, 2): 2-3 inks each, distinct even under a horizontal flip.

    Training flips images, so no class's code may be the mirror image of another's.
    """
    rng = np.random.default_rng(_BADGE_CODE_SEED)
    taken: set[bytes] = set()
    codes: list[np.ndarray] = []
    while len(codes) < num_classes:
        code = rng.integers(0, num_inks, size=(2, 2), dtype=np.uint8)
        mirror = np.ascontiguousarray(code[:, ::-1])
        if not 2 <= np.unique(code).size <= 3 or code.tobytes() in taken or mirror.tobytes() in taken:
            continue
        taken.update((code.tobytes(), mirror.tobytes()))
        codes.append(code)
    return np.stack(codes)


def class_palette(num_classes: int) -> SyntheticPalette:
    """Class colours, the shared distractor pool and the badge codes for ``num_classes`` classes.

    Args:
        num_classes: foreground classes, VOC ids ``1..num_classes``.

    Returns:
        The palette; class hues are evenly spaced, distractor hues sit halfway between them.
    """
    hues = np.arange(num_classes) / num_classes
    class_colours = np.stack([hsv_colour(h, BODY_SATURATION, BODY_VALUE) for h in hues])
    distractors = np.stack([hsv_colour(h + 0.5 / num_classes, BODY_SATURATION, BODY_VALUE) for h in hues])
    inks = _badge_inks(num_classes)
    return SyntheticPalette(
        class_colours=np.rint(class_colours).astype(np.uint8),
        distractor_colours=np.rint(distractors).astype(np.uint8),
        badge_codes=inks[_badge_codes(num_classes, len(inks))],
    )


def image_id(pool: int, index: int) -> str:
    """The VOC-style id of image ``index`` (0-based) of ``pool`` (TRAIN_POOL, VAL_POOL or TEST_POOL)."""
    return f"{_POOL_PREFIX[pool]}_{index + 1:06d}"


def split_ids(cfg: SyntheticConfig) -> dict[str, list[str]]:
    """The ids of the ``train``, ``train_aug``, ``val`` and ``test`` lists, in list order."""
    train_pool = [image_id(TRAIN_POOL, k) for k in range(cfg.num_train + cfg.num_aug_extra)]
    return {
        "train": train_pool[: cfg.num_train],
        "train_aug": train_pool,
        "val": [image_id(VAL_POOL, k) for k in range(cfg.num_val)],
        "test": [image_id(TEST_POOL, k) for k in range(cfg.num_test)],
    }


def draw_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth muted colour field: a gradient between two colours plus a few soft blobs."""
    scale = max(height, width)
    yy, xx = np.mgrid[0:height, 0:width] / scale

    def muted() -> np.ndarray:
        return hsv_colour(rng.random(), rng.uniform(*_BACKGROUND_SATURATION), rng.uniform(*_BACKGROUND_VALUE))

    angle = rng.uniform(0.0, 2.0 * np.pi)
    ramp = xx * np.cos(angle) + yy * np.sin(angle)
    ramp = ((ramp - ramp.min()) / (np.ptp(ramp) + 1e-9))[..., None]
    field = muted() * (1.0 - ramp) + muted() * ramp
    for _ in range(rng.integers(2, 5)):
        cy, cx = rng.random() * height / scale, rng.random() * width / scale
        sigma = rng.uniform(0.12, 0.35)
        weight = rng.uniform(0.4, 0.8) * np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * sigma**2))
        field = field * (1.0 - weight[..., None]) + muted() * weight[..., None]
    return field


def draw_shape(kind: int, h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A (h, w) mask: 0 rectangle, 1 ellipse, 2 convex polygon, each inscribed in the box."""
    if kind == 0:
        return np.ones((h, w), dtype=bool)
    yy, xx = np.mgrid[0:h, 0:w] + 0.5  # pixel centres
    if kind == 1:
        return ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1.0
    # Vertices on the inscribed ellipse in angular order form a convex polygon;
    # jittering evenly spaced angles by < half a step keeps it fat.
    sides = rng.integers(5, 9)
    angles = (np.arange(sides) + rng.uniform(-0.3, 0.3, sides)) * 2.0 * np.pi / sides + rng.uniform(0, 2 * np.pi)
    vx, vy = w / 2 * (1 + np.cos(angles)), h / 2 * (1 + np.sin(angles))
    ex, ey = np.roll(vx, -1) - vx, np.roll(vy, -1) - vy
    cross = ex * (yy[..., None] - vy) - ey * (xx[..., None] - vx)
    return (cross >= 0).all(axis=-1) | (cross <= 0).all(axis=-1)


def _draw_body(
    rng: np.random.Generator, cfg: SyntheticConfig, palette: SyntheticPalette, height: int, width: int
) -> _Body:
    longer = rng.uniform(*cfg.object_scale) * min(height, width)
    shorter = longer * rng.uniform(0.65, 1.0)
    h, w = (longer, shorter) if rng.random() < 0.5 else (shorter, longer)
    h = int(np.clip(round(h), _MIN_BODY_SIDE, height))
    w = int(np.clip(round(w), _MIN_BODY_SIDE, width))
    top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
    shape = draw_shape(int(rng.integers(3)), h, w, rng)
    class_id = int(rng.integers(1, cfg.num_classes + 1))
    if rng.random() < cfg.body_class_colour_prob:
        colour = palette.class_colours[class_id - 1]
    else:
        colour = palette.distractor_colours[rng.integers(len(palette.distractor_colours))]
    # Mild stripes at a random angle and period, plus a small brightness change:
    # a texture every body shares, which the smooth background lacks.
    angle, period, phase = rng.uniform(0, np.pi), rng.uniform(*STRIPE_PERIOD), rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:h, 0:w]
    stripes = 1.0 + STRIPE_AMPLITUDE * np.sin(2 * np.pi * (xx * np.cos(angle) + yy * np.sin(angle)) / period + phase)
    fill = colour.astype(float) * rng.uniform(0.92, 1.08) * stripes[..., None]
    return _Body(class_id=class_id, top=top, left=left, shape=shape, fill=fill)


def _place_square(allowed: np.ndarray, side: int, rng: np.random.Generator) -> tuple[int, int] | None:
    """A random top-left corner of a ``side`` square lying wholly in ``allowed``, or None."""
    h, w = allowed.shape
    if side > min(h, w):
        return None
    table = np.pad(allowed.cumsum(axis=0).cumsum(axis=1), ((1, 0), (1, 0)))
    sums = table[side:, side:] - table[:-side, side:] - table[side:, :-side] + table[:-side, :-side]
    spots = np.flatnonzero(sums == side * side)
    if spots.size == 0:
        return None
    y, x = divmod(int(spots[rng.integers(spots.size)]), sums.shape[1])
    return y, x


def _place_badge(
    rng: np.random.Generator, cfg: SyntheticConfig, body: _Body, covered_later: np.ndarray
) -> tuple[int, int, int]:
    """(top, left, side) of the badge: inside the body, off later bodies where it fits."""
    h, w = body.shape.shape
    visible = body.shape & ~covered_later[body.top : body.top + h, body.left : body.left + w]
    wanted = max(_BADGE_MIN_SIDE, round(cfg.badge_fraction * min(h, w)))
    # The full size comes first; a thin body that cannot hold it gets a smaller badge.
    for side in range(wanted, 0, -1):
        for allowed in (visible, body.shape):
            spot = _place_square(allowed, side, rng)
            if spot is not None:
                return body.top + spot[0], body.left + spot[1], side
    raise ValueError("a body without pixels cannot hold a badge")


def _badge_pixels(code: np.ndarray, side: int) -> np.ndarray:
    cells = np.arange(side) * 2 // side  # 0 in the first half, 1 in the second
    return code[cells[:, None], cells[None, :]].astype(float)


def _ignore_ring(instance: np.ndarray, width: int) -> np.ndarray:
    """Pixels within 4-neighbour distance ``width`` of a pixel of another instance (both sides of a border)."""
    ring = np.zeros(instance.shape, dtype=bool)
    if width == 0:
        return ring
    down = instance[1:, :] != instance[:-1, :]
    right = instance[:, 1:] != instance[:, :-1]
    ring[1:, :] |= down
    ring[:-1, :] |= down
    ring[:, 1:] |= right
    ring[:, :-1] |= right
    for _ in range(width - 1):
        grown = ring.copy()
        grown[1:, :] |= ring[:-1, :]
        grown[:-1, :] |= ring[1:, :]
        grown[:, 1:] |= ring[:, :-1]
        grown[:, :-1] |= ring[:, 1:]
        ring = grown
    return ring


def draw_sample(
    cfg: SyntheticConfig, index: int, pool: int = TRAIN_POOL
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, tuple[int, int, int, int]]], np.ndarray]:
    """Draw image ``index`` of ``pool``; it depends on ``cfg.seed``, ``pool`` and ``index`` only.

    Args:
        cfg: the synthetic section of the params.
        index: 0-based position in the pool (the train pool holds train, then the train_aug extras).
        pool: TRAIN_POOL, VAL_POOL or TEST_POOL; each draws from its own random stream.

    Returns:
        ``(image, mask, objects, badge_mask)``: image (H, W, 3) uint8; mask (H, W) uint8 with 0
        background, the class id on objects and 255 on the ring around every object border;
        objects, in painting order, the visible ones as ``(class_id, (xmin, ymin, xmax, ymax))``
        with VOC's 1-based inclusive box of the object's visible pixels; badge_mask (H, W) bool,
        the visible badge pixels.
    """
    palette = class_palette(cfg.num_classes)
    rng = np.random.default_rng([cfg.seed, pool, index])
    height, width = (int(v) for v in rng.integers(cfg.min_side, cfg.max_side + 1, size=2))
    image = draw_background(rng, height, width)
    bodies = [_draw_body(rng, cfg, palette, height, width) for _ in range(rng.integers(1, cfg.max_objects + 1))]
    footprints = [body.footprint(height, width) for body in bodies]

    # Badges avoid the bodies painted later, so an object rarely loses its badge.
    badges: list[tuple[int, int, int]] = [(0, 0, 0)] * len(bodies)
    covered_later = np.zeros((height, width), dtype=bool)
    for i in reversed(range(len(bodies))):
        badges[i] = _place_badge(rng, cfg, bodies[i], covered_later)
        covered_later |= footprints[i]

    instance = np.full((height, width), -1, dtype=np.int8)
    badge_mask = np.zeros((height, width), dtype=bool)
    for i, (body, footprint, (top, left, side)) in enumerate(zip(bodies, footprints, badges)):
        h, w = body.shape.shape
        box = image[body.top : body.top + h, body.left : body.left + w]
        box[body.shape] = body.fill[body.shape]
        image[top : top + side, left : left + side] = _badge_pixels(palette.badge_codes[body.class_id - 1], side)
        instance[footprint] = i
        badge_mask[footprint] = False
        badge_mask[top : top + side, left : left + side] = True

    image = image + rng.normal(0.0, NOISE_STD, image.shape)
    image = np.rint(np.clip(image, 0, 255)).astype(np.uint8)

    class_of = np.array([0] + [body.class_id for body in bodies], dtype=np.uint8)
    mask = class_of[instance.astype(np.int64) + 1]
    ring = _ignore_ring(instance, cfg.ignore_ring)
    mask[ring] = IGNORE_INDEX

    # An object counts (XML and image label) when some of it survives both later
    # bodies and the ring, so the labels are exactly the classes in the mask.
    objects: list[tuple[int, tuple[int, int, int, int]]] = []
    for i, body in enumerate(bodies):
        region = instance == i
        if (region & ~ring).any():
            ys, xs = np.nonzero(region)
            objects.append(
                (body.class_id, (int(xs.min()) + 1, int(ys.min()) + 1, int(xs.max()) + 1, int(ys.max()) + 1))
            )
    return image, mask, objects, badge_mask


def _image_record(
    mask: np.ndarray, objects: list[tuple[int, tuple[int, int, int, int]]], badge_mask: np.ndarray
) -> dict[str, Any]:
    foreground = (mask != 0) & (mask != IGNORE_INDEX)
    return {
        "height": mask.shape[0],
        "width": mask.shape[1],
        "objects": len(objects),
        "classes": sorted({class_id for class_id, _ in objects}),
        "pixels": mask.size,
        "object_pixels": int(foreground.sum()),
        "badge_pixels": int((badge_mask & foreground).sum()),
        "ignore_pixels": int((mask == IGNORE_INDEX).sum()),
    }


def _split_statistics(records: list[dict[str, Any]], num_classes: int) -> dict[str, Any]:
    """Totals over one split; pixel fractions count the scored pixels (not the 255 ring)."""
    pixels = sum(r["pixels"] for r in records)
    object_pixels = sum(r["object_pixels"] for r in records)
    badge = sum(r["badge_pixels"] for r in records) / max(object_pixels, 1)
    return {
        "images": len(records),
        "mean_objects_per_image": round(float(np.mean([r["objects"] for r in records])), 4),
        "mean_classes_per_image": round(float(np.mean([len(r["classes"]) for r in records])), 4),
        "images_per_class": {
            CLASS_NAMES[c]: sum(c in r["classes"] for r in records) for c in range(1, num_classes + 1)
        },
        "object_pixel_fraction": round(object_pixels / pixels, 4),
        "ignore_pixel_fraction": round(sum(r["ignore_pixels"] for r in records) / pixels, 4),
        "badge_fraction_of_object_pixels": round(badge, 4),
        "body_fraction_of_object_pixels": round(1.0 - badge, 4),
        "height_range": [min(r["height"] for r in records), max(r["height"] for r in records)],
        "width_range": [min(r["width"] for r in records), max(r["width"] for r in records)],
    }


def _remove_stale(out: Path, expected: dict[str, tuple[str, set[str]]]) -> None:
    """Delete files a run with another config left here (generator ids only), so the folder is this run's alone."""
    for folder, (suffix, ids) in expected.items():
        for path in (out / folder).glob(f"*{suffix}"):
            if _ID_PATTERN.match(path.stem) and path.stem not in ids:
                path.unlink()


def generate_synthetic(out_dir: str | Path, cfg: SyntheticConfig, progress: bool = True) -> dict[str, Any]:
    """Write the dataset under ``out_dir`` (a ``VOC2012`` folder) and return its summary.

    Every file is written atomically; the split lists come last (after removing
    any old ones first), so a crashed run leaves no split lists and a rerun
    redoes it. A rerun with the same config rewrites identical bytes.

    Args:
        out_dir: the VOC2012 folder to create or refresh.
        cfg: the synthetic section of the params.
        progress: show a tqdm progress bar.

    Returns:
        The summary also written to ``synthetic.json``: config, counts, class colours and
        badge codes, and per-split statistics.
    """
    out = Path(out_dir)
    splits = split_ids(cfg)
    labelled_ids = splits["train_aug"] + splits["val"]
    segmentation_ids = set(splits["train"]) | set(splits["val"])
    # test images are published without masks or annotations, as on the VOC server.
    expected = {
        JPEG_DIR: (".jpg", set(labelled_ids) | set(splits["test"])),
        ANNOTATION_DIR: (".xml", set(labelled_ids)),
        MASK_DIR: (".png", segmentation_ids),
        MASK_AUG_DIR: (".png", set(labelled_ids)),
    }
    # Old split lists would vouch for files this run is about to rewrite.
    for name in splits:
        (out / SPLIT_DIR / f"{name}.txt").unlink(missing_ok=True)
    _remove_stale(out, expected)

    palette = class_palette(cfg.num_classes)
    colour_map = voc_palette()
    jobs = (
        [(TRAIN_POOL, k) for k in range(len(splits["train_aug"]))]
        + [(VAL_POOL, k) for k in range(cfg.num_val)]
        + [(TEST_POOL, k) for k in range(cfg.num_test)]
    )
    records: dict[str, dict[str, Any]] = {}
    for pool, index in tqdm(jobs, desc="synthetic", unit="img", disable=not progress):
        name = image_id(pool, index)
        image, mask, objects, badge_mask = draw_sample(cfg, index, pool)
        height, width = mask.shape
        save_jpeg(out / JPEG_DIR / f"{name}.jpg", image, quality=cfg.jpeg_quality)
        if pool == TEST_POOL:
            continue
        save_png(out / MASK_AUG_DIR / f"{name}.png", mask)
        if name in segmentation_ids:
            save_png(out / MASK_DIR / f"{name}.png", mask, palette=colour_map)
        xml_path = out / ANNOTATION_DIR / f"{name}.xml"
        write_text(xml_path, write_annotation_xml(xml_path, name, width, height, objects))
        records[name] = _image_record(mask, objects, badge_mask)

    summary = {
        "generator": "pixsup.data.synthetic",
        "config": cfg.model_dump(mode="json"),
        "counts": {name: len(ids) for name, ids in splits.items()},
        "id_scheme": {
            "train_aug": "2100_NNNNNN (train = the first num_train)",
            "val": "2101_NNNNNN",
            "test": "2102_NNNNNN (images only)",
        },
        "classes": [
            {
                "id": c,
                "name": CLASS_NAMES[c],
                "colour": palette.class_colours[c - 1].tolist(),
                "badge_code": palette.badge_codes[c - 1].tolist(),
            }
            for c in range(1, cfg.num_classes + 1)
        ],
        "badge_code_layout": "2x2 cells [[top-left, top-right], [bottom-left, bottom-right]], RGB each",
        "distractor_colours": palette.distractor_colours.tolist(),
        "statistics": {
            name: _split_statistics([records[i] for i in ids], cfg.num_classes)
            for name, ids in splits.items()
            if name != "test"
        },
    }
    write_json(out / SUMMARY_FILE, summary)
    for name, ids in splits.items():
        write_text(out / SPLIT_DIR / f"{name}.txt", "".join(f"{i}\n" for i in ids))
    return summary
