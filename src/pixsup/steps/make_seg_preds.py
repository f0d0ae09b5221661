"""Segmentation predictions for every image of a split, as palette PNGs (the VOC server's format).

Inputs:  --model (train_seg output), --root (VOC2012 folder), --split (val, test, ...),
         --mode ``ss`` (single scale) | ``ms`` (``seg_infer.scales``, with mirrors if
         ``seg_infer.flip``, then the dense CRF if ``seg_infer.crf``), --params (reads
         section ``seg_infer``).
Outputs: --out, a folder with ``<id>.png`` per image (palette PNG of VOC class ids, the
         image's size) and ``index.json`` (``ids``, ``split``, ``mode``, ``scales``,
         ``flip``, ``crf``); ``<out>.meta.json``. With --tar, also a tar of the PNGs laid
         out as the evaluation server expects (``results/VOC2012/Segmentation/comp6_test_cls/``).

Example:
  python -m pixsup.steps.make_seg_preds --params params.yaml --root data/synthetic/VOC2012 --split test \\
      --mode ms --model results/synthetic/seg/model.pt \\
      --out results/synthetic/VOC2012/Segmentation/comp6_test_cls --tar results/synthetic/submission_test.tar
"""

from __future__ import annotations

import tarfile
from pathlib import Path

from ..config import load_params, section_dict
from ..data.voc import VocIndex, read_split
from ..io import atomic_path
from ..provenance import StepRecord
from ..pseudo_labels.crf import crf_from_probabilities
from ..pseudo_labels.folders import map_ids, write_label_png, write_manifest
from ..segmentation import load_segnet, predict_probs
from ..training import resolve_device
from . import _cli

SUBMISSION_DIR = "results/VOC2012/Segmentation/comp6_test_cls"


def write_submission_tar(pred_dir: Path, ids: list[str], tar_path: Path) -> None:
    """A tar of ``<id>.png`` under ``results/VOC2012/Segmentation/comp6_test_cls/``, ready to upload."""
    with atomic_path(tar_path) as tmp, tarfile.open(tmp, "w") as tar:
        for image_id in ids:
            tar.add(pred_dir / f"{image_id}.png", arcname=f"{SUBMISSION_DIR}/{image_id}.png")


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("make_seg_preds", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--model", required=True, help="train_seg output")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="val", help="split to predict (default: val)")
    p.add_argument("--mode", choices=["ss", "ms"], default="ms", help="single or multi-scale (default: ms)")
    p.add_argument("--out", required=True, help="folder of prediction PNGs")
    p.add_argument("--tar", default=None, help="also write the server's submission tar here")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_params(args.params)
        cfg = params.seg_infer
        record = StepRecord("make_seg_preds", section_dict(params, "seg_infer"))
        device = resolve_device(args.device)
        model = load_segnet(args.model).to(device)
        index = VocIndex(args.root)
        ids = read_split(args.root, args.split)
        scales, flip = ((1.0,), False) if args.mode == "ss" else (tuple(cfg.scales), cfg.flip)
        use_crf = args.mode == "ms" and cfg.crf
        out = Path(args.out)

        def work(image_id: str) -> str:
            image = index.load_image(image_id)
            probs = predict_probs(model, image, scales, flip, device)
            if use_crf:
                probs = crf_from_probabilities(image, probs, cfg.crf_params)
            write_label_png(out / f"{image_id}.png", probs.argmax(0).astype("uint8"))
            return image_id

        for _ in map_ids(work, ids, 1, f"{args.mode} {args.split}", not args.quiet):
            pass
        write_manifest(out, ids, split=args.split, mode=args.mode, scales=list(scales), flip=flip, crf=use_crf,
                       model=args.model)
        if args.tar:
            write_submission_tar(out, ids, Path(args.tar))
        record.write(out, extra={"images": len(ids), "mode": args.mode})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
