"""Train the segmentation network (DeepLab-v2, or tiny on a CPU) on pseudo masks.

Inputs:  --masks (a make_pseudo_masks folder covering the split), --root (VOC2012 folder),
         --split (train_aug), --params (reads the values of ``pixsup.config.STEP_KEYS["train_seg"]``),
         --cam-model (the CAM network whose backbone starts training with ``seg_train.pretrained: cam``).
Outputs: --out (``pixsup.segnet/1`` torch file: params and weights), ``<out>.losses.csv``
         (epoch, iteration, lr, loss) or --losses, ``<out>.meta.json``. While running:
         ``<out>.resume.pt`` after every epoch; rerunning the same command resumes from it.
Several GPUs: run it under ``python -m pixsup.runtime.launch --nproc N --``; seg_train.batch_size
         stays the global batch (each process takes batch_size / N) and only rank 0 writes.

Example:
  python -m pixsup.steps.train_seg --params params.yaml --root data/synthetic/VOC2012 \\
      --masks results/synthetic/seed0/pseudo_labels/full/masks/irn/train_aug --out results/synthetic/seed0/seg/model.pt
"""

from __future__ import annotations

from ..config import load_step_params
from ..provenance import StepRecord
from ..runtime.launch_env import launch_rank
from ..segmentation.training import train_seg
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("train_seg", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--masks", required=True, help="pseudo masks folder")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train_aug", help="split to train on (default: train_aug)")
    p.add_argument("--cam-model", default=None, help="CAM network checkpoint (for pretrained: cam)")
    p.add_argument("--out", required=True, help="network file to write")
    _cli.add_training_arguments(p)
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log, rank=launch_rank())

    def body() -> int:
        params = load_step_params(args.params, "train_seg")
        cfg = params.seg_train
        record = StepRecord("train_seg", params.model_dump(mode="json"), seed=cfg.seed)
        summary = train_seg(
            cfg,
            args.root,
            args.split,
            args.masks,
            args.out,
            losses_csv=args.losses,
            device=args.device,
            cam_checkpoint=args.cam_model,
            stop_after_epoch=args.stop_after_epoch,
            progress=not args.quiet,
        )
        _cli.record_training(record, args.out, summary, {"masks": args.masks})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
