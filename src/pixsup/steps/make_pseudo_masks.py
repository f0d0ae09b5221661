"""Full pseudo masks from CAMs, refined by one method: irn (random walk), crf or cam (threshold only).

Inputs:  --cams (make_cams folder), --root (VOC2012 folder), --split (usually train_aug),
         --method irn | crf | cam, --irn (train_irn output; irn only),
         --params (reads the values of ``pixsup.config.STEP_KEYS["make_pseudo_masks"]``),
         --seed-metrics (the variant's eval_cams JSON on train; with ``pseudo_labels.calibration:
         seed_curve`` the thresholds move with its best threshold, pixsup.pseudo_labels.calibration).
Outputs: --out, a folder with ``<id>.png`` per image (palette PNG of VOC class ids, no
         255) and ``index.json`` (``ids``, ``split``, ``method``, ``cams``, the thresholds
         used); ``<out>.meta.json``.

Example:
  python -m pixsup.steps.make_pseudo_masks --params params.yaml --root data/synthetic/VOC2012 \\
      --split train_aug --method irn --cams results/synthetic/seed0/full/cams/train_aug \\
      --irn results/synthetic/seed0/pseudo_labels/full/irn.pt \\
      --out results/synthetic/seed0/pseudo_labels/full/masks/irn/train_aug
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..cam.cam_files import load_image_and_cams, require_cam_dir
from ..config import load_step_params
from ..data.label_folders import start_label_folder, write_label_png, write_manifest
from ..data.voc import read_split
from ..provenance import StepRecord
from ..pseudo_labels.boundary import load_boundary_net, predict_boundary
from ..pseudo_labels.calibration import calibrate
from ..pseudo_labels.refine import cam_mask, crf_mask, enlarge_labels, irn_mask, working_size
from ..runtime.device import resolve_device
from ..runtime.parallel import map_ids
from . import _cli

PER_IMAGE = {"cam": cam_mask, "crf": crf_mask}


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("make_pseudo_masks", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--cams", required=True, help="make_cams output folder")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train_aug", help="split to label (default: train_aug)")
    p.add_argument("--method", choices=["irn", "crf", "cam"], required=True, help="refinement")
    p.add_argument("--irn", default=None, help="trained boundary network (method irn)")
    p.add_argument("--out", required=True, help="folder of mask PNGs to write")
    p.add_argument("--seed-metrics", default=None, help="eval_cams JSON of the variant (calibration: seed_curve)")
    p.add_argument("--workers", type=int, default=1, help="processes (default 1; irn on CUDA uses one)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N (irn)")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_step_params(args.params, "make_pseudo_masks")
        # irn and cam read the mask background only; crf labels the whole image at it too.
        cfg, thresholds = calibrate(
            params.pseudo_labels, args.seed_metrics, ("conf_fg_threshold", "conf_bg_threshold", "bg_threshold")
        )
        record = StepRecord("make_pseudo_masks", params.model_dump(mode="json"))
        require_cam_dir(args.cams)
        ids = read_split(args.root, args.split)
        start_label_folder(args.out)
        workers = args.workers
        boundary_net = device = None
        if args.method == "irn":
            if not args.irn:
                p.error("--method irn needs --irn")
            device = resolve_device(args.device)
            # Loaded before the worker processes fork: they share it.
            boundary_net = load_boundary_net(args.irn).to(device)
            if device.type == "cuda":
                workers = 1  # one process drives the GPU
            elif workers > 1:
                torch.set_num_threads(1)  # the parallelism is across images

        def work(image_id: str) -> str:
            image, cam_arrays = load_image_and_cams(args.root, args.cams, image_id)
            size = image.shape[:2]
            image, cam_arrays = working_size(image, cam_arrays, cfg.max_side)
            if boundary_net is not None:
                labels = irn_mask(image, cam_arrays, predict_boundary(boundary_net, image, device), cfg)
            else:
                labels = PER_IMAGE[args.method](image, cam_arrays, cfg)
            write_label_png(Path(args.out) / f"{image_id}.png", enlarge_labels(labels, size))
            return image_id

        for _ in map_ids(work, ids, workers, f"{args.method} masks", not args.quiet):
            pass
        write_manifest(args.out, ids, split=args.split, method=args.method, cams=args.cams, **thresholds)
        record.write(args.out, extra={"images": len(ids), "method": args.method, **thresholds})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
