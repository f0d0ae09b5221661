"""The test split's predictions in the evaluation server's layout, and the tar to upload.

Predicts as make_seg_preds --mode ms does (``seg_infer.scales``, mirrors if
``seg_infer.flip``, the dense CRF if ``seg_infer.crf``).

Inputs:  --model (train_seg output), --root (VOC2012 folder), --split (default: test),
         --params (reads the values of ``pixsup.config.STEP_KEYS["make_test_submission"]``).
Outputs: --out, a folder with ``<id>.png`` per image and ``index.json`` (as make_seg_preds);
         --tar, a tar of the PNGs under ``results/VOC2012/Segmentation/comp6_test_cls/``, as
         the server expects; ``<out>.meta.json``. Without a test split (the VOC 2012 trainval
         tar has none) the folder and tar are empty and ``index.json`` says why (``skipped``).

Example:
  python -m pixsup.steps.make_test_submission --params params.yaml --root data/synthetic/VOC2012 \\
      --model results/synthetic/seed0/seg/model.pt --out results/synthetic/seed0/VOC2012/Segmentation/comp6_test_cls \\
      --tar results/synthetic/seed0/submission_test.tar
"""

from __future__ import annotations

from pathlib import Path

from ..config import load_step_params
from ..data.label_folders import start_label_folder, write_manifest
from ..data.voc import read_split
from ..data.voc_format import SPLIT_DIR
from ..provenance import StepRecord
from ..runtime.device import resolve_device
from ..segmentation.prediction import predict_folder, write_submission_tar
from ..segmentation.training import load_segnet
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("make_test_submission", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--model", required=True, help="train_seg output")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="test", help="split to predict (default: test)")
    p.add_argument("--out", required=True, help="folder of prediction PNGs")
    p.add_argument("--tar", required=True, help="the submission tar to write")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_step_params(args.params, "make_test_submission")
        cfg = params.seg_infer
        record = StepRecord("make_test_submission", params.model_dump(mode="json"))
        if not (Path(args.root) / SPLIT_DIR / f"{args.split}.txt").is_file():
            # The VOC 2012 trainval tar has no test split: an empty submission says why, and the report too.
            reason = f"no {SPLIT_DIR}/{args.split}.txt in {args.root} (data.voc12.test_url adds the test split)"
            start_label_folder(args.out)
            write_submission_tar(args.out, [], args.tar)
            write_manifest(args.out, [], split=args.split, skipped=reason)
            record.write(args.out, extra={"images": 0, "skipped": reason})
            print(f"test submission skipped: {reason}")
            return 0
        device = resolve_device(args.device)
        ids = read_split(args.root, args.split)
        scales = tuple(cfg.scales)
        predict_folder(
            load_segnet(args.model).to(device),
            args.root,
            ids,
            args.out,
            scales,
            cfg.flip,
            cfg.crf_params if cfg.crf else None,
            device,
            {"split": args.split, "mode": "ms", "model": args.model},
            cfg.max_side,
            progress=not args.quiet,
        )
        write_submission_tar(args.out, ids, args.tar)
        record.write(args.out, extra={"images": len(ids), "mode": "ms", "tar": args.tar})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
