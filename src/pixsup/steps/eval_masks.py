"""mIoU of a folder of label PNGs (pseudo masks or segmentation predictions) against ground truth.

Inputs:  --masks (a folder with ``<id>.png`` for every id of the split), --root (VOC2012
         folder), --split (usually ``train`` for pseudo masks, ``val`` for predictions).
Outputs: --out, metrics JSON: ``miou`` (percent), ``per_class_iou`` /
         ``per_class_precision`` / ``per_class_recall`` (percent, null for classes absent
         from ground truth and prediction), ``images``, ``split``, ``masks``; and
         ``<out>.meta.json``. 255 in the ground truth is ignored.

Example:
  python -m pixsup.steps.eval_masks --root data/synthetic/VOC2012 --split train \\
      --masks results/synthetic/full/masks/irn/train_aug --out results/synthetic/metrics/masks_train_full_irn.json
"""

from __future__ import annotations

from .. import evaluate
from ..io import write_json
from ..provenance import StepRecord
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("eval_masks", __doc__)
    p.add_argument("--masks", required=True, help="folder of label PNGs")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train", help="split to evaluate (default: train)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        record = StepRecord("eval_masks", {})
        result = evaluate.evaluate_label_folder(args.masks, args.root, args.split, progress=not args.quiet)
        write_json(args.out, result)
        record.write(args.out, extra={"miou": result["miou"]})
        print(f"{args.split}: mIoU {result['miou']:.2f} ({args.masks})")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
