"""mIoU of segmentation predictions (make_seg_preds folders) against ground truth.

Inputs:  --masks (a make_seg_preds folder with ``<id>.png`` for every id of the split),
         --root (VOC2012 folder), --split (default ``val``).
Outputs: --out, metrics JSON as eval_masks writes it: ``miou`` (percent), ``per_class_iou`` /
         ``per_class_precision`` / ``per_class_recall``, ``images``, ``split``, ``masks``;
         and ``<out>.meta.json``. 255 in the ground truth is ignored.

Example:
  python -m pixsup.steps.eval_seg --root data/synthetic/VOC2012 --split val \\
      --masks results/synthetic/seed0/seg/preds/val_ms --out results/synthetic/seed0/metrics/seg/val_ms.json
"""

from __future__ import annotations

from . import eval_masks


def main(argv: list[str] | None = None) -> int:
    return eval_masks.main(argv, step="eval_seg", doc=__doc__, default_split="val")


if __name__ == "__main__":
    raise SystemExit(main())
