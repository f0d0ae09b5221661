"""Segmentation predictions for every image of a split, as palette PNGs (the VOC server's format).

Inputs:  --model (train_seg output), --root (VOC2012 folder), --split (val, ...),
         --mode ``ss`` (single scale) | ``ms`` (``seg_infer.scales``, with mirrors if
         ``seg_infer.flip``, then the dense CRF if ``seg_infer.crf``),
         --params (reads the values of ``pixsup.config.STEP_KEYS["make_seg_preds"]``).
Outputs: --out, a folder with ``<id>.png`` per image (palette PNG of VOC class ids, the
         image's size) and ``index.json`` (``ids``, ``scales``, ``flip``, ``crf``, ``split``,
         ``mode``, ``model``); ``<out>.meta.json``. The test split's submission:
         make_test_submission.

Example:
  python -m pixsup.steps.make_seg_preds --params params.yaml --root data/synthetic/VOC2012 --split val \\
      --mode ms --model results/synthetic/seed0/seg/model.pt --out results/synthetic/seed0/seg/preds/val_ms
"""

from __future__ import annotations

from ..config import load_step_params
from ..data.voc import read_split
from ..provenance import StepRecord
from ..runtime.device import resolve_device
from ..segmentation.prediction import predict_folder
from ..segmentation.training import load_segnet
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("make_seg_preds", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--model", required=True, help="train_seg output")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="val", help="split to predict (default: val)")
    p.add_argument("--mode", choices=["ss", "ms"], default="ms", help="single or multi-scale (default: ms)")
    p.add_argument("--out", required=True, help="folder of prediction PNGs")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_step_params(args.params, "make_seg_preds")
        cfg = params.seg_infer
        record = StepRecord("make_seg_preds", params.model_dump(mode="json"))
        device = resolve_device(args.device)
        ids = read_split(args.root, args.split)
        scales, flip = ((1.0,), False) if args.mode == "ss" else (tuple(cfg.scales), cfg.flip)
        crf = cfg.crf_params if args.mode == "ms" and cfg.crf else None
        predict_folder(
            load_segnet(args.model).to(device),
            args.root,
            ids,
            args.out,
            scales,
            flip,
            crf,
            device,
            {"split": args.split, "mode": args.mode, "model": args.model},
            cfg.max_side,
            progress=not args.quiet,
        )
        record.write(args.out, extra={"images": len(ids), "mode": args.mode})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
