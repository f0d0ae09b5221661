"""The report's figures: a CAM gallery, threshold-vs-mIoU curves, the ablation's differences with
their intervals and training loss curves (PNG and PDF)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on cluster nodes
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from ..cam.cam_files import load_cam_file  # noqa: E402
from ..data.voc import VocIndex  # noqa: E402
from ..data.voc_format import IGNORE_INDEX, voc_palette  # noqa: E402
from ..files import atomic_path  # noqa: E402

FORMATS = ("png", "pdf")


def save_figure(fig: plt.Figure, stem: str | os.PathLike) -> list[Path]:
    """Save ``fig`` as ``<stem>.png`` and ``<stem>.pdf`` (atomically) and close it."""
    paths = []
    for fmt in FORMATS:
        path = Path(stem).with_suffix(f".{fmt}")
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format=fmt, dpi=150, bbox_inches="tight")
        paths.append(path)
    plt.close(fig)
    return paths


def colour_mask(mask: np.ndarray) -> np.ndarray:
    """A class-index mask as RGB in VOC's palette (255, ignore, is shown white)."""
    palette = np.array(voc_palette(), dtype=np.uint8).reshape(-1, 3)
    rgb = palette[np.minimum(mask, len(palette) - 1)]
    rgb[mask == IGNORE_INDEX] = 255
    return rgb


def cam_heat(cam_file: str | os.PathLike) -> np.ndarray:
    """Strongest class per pixel of a CAM file's ``high_res`` maps, in [0, 1] (zeros if no class)."""
    high_res = load_cam_file(cam_file)["high_res"].astype(np.float32)
    return high_res.max(axis=0) if len(high_res) else np.zeros(high_res.shape[1:], np.float32)


def cam_gallery(
    root: str | os.PathLike, ids: list[str], cam_dirs: dict[str, str | os.PathLike], stem: str | os.PathLike
) -> list[Path]:
    """One row per id: image | ground truth | one CAM overlay per entry of ``cam_dirs`` (title -> folder)."""
    index = VocIndex(root)
    columns = 2 + len(cam_dirs)
    fig, axes = plt.subplots(len(ids), columns, figsize=(2.2 * columns, 2.2 * len(ids)), squeeze=False)
    for row, image_id in enumerate(ids):
        image = index.load_image(image_id)
        mask = index.load_mask(image_id)
        panels: list[tuple[str, np.ndarray, dict[str, Any]]] = [
            ("image", image, {}),
            ("ground truth", colour_mask(mask), {}),
        ]
        for title, folder in cam_dirs.items():
            panels.append((title, cam_heat(Path(folder) / f"{image_id}.npz"), {"cmap": "jet", "vmin": 0, "vmax": 1}))
        for col, (title, picture, style) in enumerate(panels):
            ax = axes[row, col]
            if style:
                ax.imshow(image)
                ax.imshow(picture, alpha=0.5, **style)
            else:
                ax.imshow(picture)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(title, fontsize=9)
        axes[row, 0].set_ylabel(image_id, fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def threshold_curves(seed_metrics: dict[str, dict[str, Any]], stem: str | os.PathLike) -> list[Path]:
    """Seed mIoU against the background threshold, one line per variant, best points marked."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for name, metrics in seed_metrics.items():
        curve = pd.DataFrame(metrics["curve"])
        (line,) = ax.plot(curve["threshold"], curve["miou"], label=f"{name} ({metrics['miou']:.1f})")
        ax.plot([metrics["best_threshold"]], [metrics["miou"]], "o", color=line.get_color())
    ax.set_xlabel("background threshold")
    ax.set_ylabel("seed mIoU (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, stem)


def ablation_intervals(ablation: pd.DataFrame, stem: str | os.PathLike) -> list[Path]:
    """Each ablation row's seed-mIoU difference to the same-budget baseline and to the SupportNet,
    with its 95 % interval as an error bar (rows without an interval are left out)."""
    panels = {"vs_same_budget": "vs same-budget baseline", "vs_support": "vs SupportNet"}
    fig, axes = plt.subplots(1, len(panels), figsize=(7.0, 0.5 + 0.45 * max(len(ablation), 1)), squeeze=False)
    for ax, (stem_column, title) in zip(axes[0], panels.items()):
        rows = ablation[ablation[stem_column].notna()] if stem_column in ablation else ablation.iloc[0:0]
        y = np.arange(len(rows))
        values = rows[stem_column].to_numpy(float) if len(rows) else np.zeros(0)
        if len(rows):
            errors = np.stack(
                [
                    values - rows[f"{stem_column}_low"].to_numpy(float),
                    rows[f"{stem_column}_high"].to_numpy(float) - values,
                ]
            )
            ax.errorbar(values, y, xerr=errors, fmt="o", capsize=3)
        ax.axvline(0.0, color="grey", lw=0.8)
        ax.set_yticks(y, rows["variant"] if len(rows) else [])
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("seed mIoU difference (points, 95 % CI)")
        ax.grid(alpha=0.3, axis="x")
    fig.tight_layout()
    return save_figure(fig, stem)


def loss_curves(loss_files: dict[str, str | os.PathLike], stem: str | os.PathLike) -> list[Path]:
    """Per-epoch mean of every loss term of each training run (one panel per term)."""
    frames = {name: pd.read_csv(path).groupby("epoch").mean(numeric_only=True) for name, path in loss_files.items()}
    terms = [t for t in ("loss", "cls", "rcm", "mam") if any(t in f and f[t].abs().sum() > 0 for f in frames.values())]
    fig, axes = plt.subplots(1, len(terms), figsize=(3.2 * len(terms), 3.0), squeeze=False)
    for ax, term in zip(axes[0], terms):
        for name, frame in frames.items():
            if term in frame and frame[term].abs().sum() > 0:
                ax.plot(frame.index + 1, frame[term], label=name)
        ax.set_title(term)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, stem)
