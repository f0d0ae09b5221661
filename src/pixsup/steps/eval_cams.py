"""Evaluate CAM seeds against ground-truth masks, sweeping the background threshold.

Inputs:  --cams (a make_cams folder with ``index.json``), --root (VOC2012 folder),
         --split (the list to evaluate, usually ``train``; every id must have a
         CAM file and a mask), --params (reads the values of ``pixsup.config.STEP_KEYS["eval_cams"]``).
Outputs: --out, metrics JSON: ``miou`` (percent, at the best threshold),
         ``best_threshold``, ``curve`` (threshold, miou for the whole sweep),
         ``per_class_iou`` / ``per_class_precision`` / ``per_class_recall``
         (percent, null for classes absent from ground truth and prediction),
         ``images``; and ``<out>.meta.json``.
         --per-image, an ``.npz`` for the report's confidence intervals: ``ids`` (N,)
         the split's ids in list order, ``confusion`` (N, 21, 21) int64 each image's seed
         confusion matrix (rows ground truth, columns prediction, 255 ignored) at
         ``threshold`` (0-d, the best threshold).

The seed at threshold t labels a pixel with its strongest class when that
class's normalised CAM exceeds t, else background; 255 in the masks is ignored.

Example:
  python -m pixsup.steps.eval_cams --params params.yaml --root data/synthetic/VOC2012 --split train \\
      --cams results/synthetic/seed0/full/cams/train --out results/synthetic/seed0/metrics/seeds_train_full.json \\
      --per-image results/synthetic/seed0/metrics/seeds_train_full.per_image.npz
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..cam.cam_files import CamFileError
from ..config import load_step_params
from ..evaluation.metrics import sweep_thresholds
from ..evaluation.scoring import evaluate_cams, per_image_cam_confusions
from ..files import save_npz, write_json
from ..provenance import StepRecord
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("eval_cams", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--cams", required=True, help="make_cams output folder")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train", help="split to evaluate (default: train)")
    p.add_argument("--out", required=True, help="metrics JSON to write")
    p.add_argument("--per-image", required=True, help="per-image confusions (.npz) at the best threshold")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_step_params(args.params, "eval_cams")
        cfg = params.cam_eval
        record = StepRecord("eval_cams", params.model_dump(mode="json"))
        if not (Path(args.cams) / "index.json").is_file():
            raise CamFileError(f"{args.cams}: no index.json (make_cams has not finished, or shards not gathered)")
        thresholds = sweep_thresholds(cfg.threshold_min, cfg.threshold_max, cfg.threshold_step)
        result = evaluate_cams(args.cams, args.root, args.split, thresholds, progress=not args.quiet)
        ids, confusions = per_image_cam_confusions(
            args.cams, args.root, args.split, result["best_threshold"], progress=not args.quiet
        )
        save_npz(
            args.per_image,
            ids=np.array(ids),
            confusion=confusions,
            threshold=np.float64(result["best_threshold"]),
        )
        write_json(args.out, result)
        record.write(args.out, extra={"miou": result["miou"], "best_threshold": result["best_threshold"]})
        print(f"{args.split}: seed mIoU {result['miou']:.2f} at background threshold {result['best_threshold']}")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
