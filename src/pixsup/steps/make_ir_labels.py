"""Confident labels from CAMs (IRN's cam_to_ir_label): the training targets of the boundary network.

Inputs:  --cams (a make_cams folder, usually of train_aug), --root (VOC2012 folder),
         --split, --params (reads the values of ``pixsup.config.STEP_KEYS["make_ir_labels"]``),
         --seed-metrics (the variant's eval_cams JSON on train; with ``pseudo_labels.calibration:
         seed_curve`` the thresholds move with its best threshold, pixsup.pseudo_labels.calibration).
Outputs: --out, a folder with ``<id>.png`` per image (palette PNG: VOC class ids for
         confident pixels, 0 confident background, 255 unknown) and ``index.json``
         (``ids``, ``split``, ``cams``, the thresholds used); ``<out>.meta.json``.

Example:
  python -m pixsup.steps.make_ir_labels --params params.yaml --root data/synthetic/VOC2012 \\
      --split train_aug --cams results/synthetic/seed0/full/cams/train_aug \\
      --out results/synthetic/seed0/pseudo_labels/full/ir_labels
"""

from __future__ import annotations

from pathlib import Path

from ..cam.cam_files import load_image_and_cams, require_cam_dir
from ..config import load_step_params
from ..data.label_folders import start_label_folder, write_label_png, write_manifest
from ..data.voc import read_split
from ..provenance import StepRecord
from ..pseudo_labels.calibration import calibrate
from ..pseudo_labels.refine import confident_labels
from ..runtime.parallel import map_ids
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("make_ir_labels", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--cams", required=True, help="make_cams output folder")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train_aug", help="split to label (default: train_aug)")
    p.add_argument("--out", required=True, help="folder of label PNGs to write")
    p.add_argument("--seed-metrics", default=None, help="eval_cams JSON of the variant (calibration: seed_curve)")
    p.add_argument("--workers", type=int, default=1, help="processes (the CRF is per image; default 1)")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_step_params(args.params, "make_ir_labels")
        cfg, thresholds = calibrate(params.pseudo_labels, args.seed_metrics, ("conf_fg_threshold", "conf_bg_threshold"))
        record = StepRecord("make_ir_labels", params.model_dump(mode="json"))
        require_cam_dir(args.cams)
        ids = read_split(args.root, args.split)
        start_label_folder(args.out)

        def work(image_id: str) -> str:
            image, cam_arrays = load_image_and_cams(args.root, args.cams, image_id)
            write_label_png(Path(args.out) / f"{image_id}.png", confident_labels(image, cam_arrays, cfg))
            return image_id

        for _ in map_ids(work, ids, args.workers, "ir labels", not args.quiet):
            pass
        write_manifest(
            args.out,
            ids,
            split=args.split,
            cams=args.cams,
            **thresholds,
        )
        record.write(args.out, extra={"images": len(ids), **thresholds})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
