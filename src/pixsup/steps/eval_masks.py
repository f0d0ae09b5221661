"""mIoU of a folder of pseudo masks (label PNGs) against ground truth.

Inputs:  --masks (a folder with ``<id>.png`` for every id of the split), --root (VOC2012
         folder), --split (default ``train``: pseudo masks of train_aug are scored on train,
         as every WSSS paper reports them).
Outputs: --out, metrics JSON: ``miou`` (percent), ``per_class_iou`` /
         ``per_class_precision`` / ``per_class_recall`` (percent, null for classes absent
         from ground truth and prediction), ``images``, ``split``, ``masks``; and
         ``<out>.meta.json``. 255 in the ground truth is ignored. With --per-image, also an ``.npz``
         of ``ids`` (the split's, in list order) and ``confusion`` (N, 21, 21) int64, each image's
         confusion matrix (rows ground truth, columns prediction): what the report's intervals resample.

Example:
  python -m pixsup.steps.eval_masks --root data/synthetic/VOC2012 --split train \\
      --masks results/synthetic/seed0/pseudo_labels/full/masks/irn/train_aug \\
      --out results/synthetic/seed0/metrics/masks/train_full_irn.json
"""

from __future__ import annotations

import numpy as np

from ..evaluation.scoring import score_label_folder
from ..files import save_npz, write_json
from ..provenance import StepRecord
from . import _cli


def main(
    argv: list[str] | None = None, step: str = "eval_masks", doc: str | None = __doc__, default_split: str = "train"
) -> int:
    """The command line of this step, and of eval_seg (the same scoring of segmentation predictions)."""
    p = _cli.parser(step, doc)
    p.add_argument("--masks", required=True, help="folder of label PNGs")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default=default_split, help=f"split to evaluate (default: {default_split})")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--per-image", default=None, help="also write each image's confusion matrix to this .npz")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        record = StepRecord(step, {})
        result, ids, confusions = score_label_folder(args.masks, args.root, args.split, progress=not args.quiet)
        if args.per_image:
            save_npz(args.per_image, ids=np.array(ids), confusion=confusions)
        write_json(args.out, result)
        record.write(args.out, extra={"miou": result["miou"]})
        print(f"{args.split}: mIoU {result['miou']:.2f} ({args.masks})")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
