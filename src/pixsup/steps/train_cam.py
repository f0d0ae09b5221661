"""Train a CAM network: the SupportNet (variant ``support``) or a MainNet variant against it.

Variants (the results folders of the workflow; pixsup.cam.variants):
  support               classification loss only: the SupportNet
  baseline_same_budget  classification only again, continuing from the SupportNet (--support):
                        the ablation's same-budget baseline
  rcm | mam | full      RCM, MAM or both against the SupportNet (--support), starting from it;
                        L = L_cls + lambda_rcm L_rcm + lambda_mam L_mam

Inputs:  --root (a VOC2012 folder), --split (the list to train on, e.g. train_aug),
         --params (reads the values of ``pixsup.config.STEP_KEYS["train_cam"]``),
         --support (the trained SupportNet checkpoint; every variant but ``support`` takes it,
         and rcm/mam/full may go without it only with cam_train.support.kind: ema).
Outputs: --out (final weights, ``pixsup.cam_net/1`` torch file), ``<out>.losses.csv``
         (epoch, iteration, lr, loss, cls, rcm, mam per iteration; or --losses),
         ``<out>.meta.json`` (params, commit, versions, seed, timing). While running:
         ``<out>.resume.pt`` after every epoch; rerunning the same command resumes from it.
Several GPUs: run it under ``python -m pixsup.runtime.launch --nproc N --``; cam_train.batch_size
         stays the global batch (each process takes batch_size / N) and only rank 0 writes.

Example:
  python -m pixsup.steps.train_cam --params params.yaml --root data/synthetic/VOC2012 \\
      --split train_aug --variant support --out results/synthetic/seed0/support/model.pt
  python -m pixsup.steps.train_cam --params params.yaml --root data/synthetic/VOC2012 \\
      --split train_aug --variant full --support results/synthetic/seed0/support/model.pt \\
      --out results/synthetic/seed0/full/model.pt
"""

from __future__ import annotations

from ..cam.training import train_cam
from ..cam.variants import VARIANTS
from ..config import load_step_params
from ..data.voc import load_cls_labels_npy
from ..provenance import StepRecord
from ..runtime.launch_env import launch_rank
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("train_cam", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train_aug", help="split list to train on (default: train_aug)")
    p.add_argument("--variant", choices=list(VARIANTS), required=True, help="which network, with which losses")
    p.add_argument("--support", default=None, help="trained SupportNet checkpoint")
    p.add_argument("--out", required=True, help="final weights file")
    _cli.add_training_arguments(p)
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log, rank=launch_rank())

    def body() -> int:
        params = load_step_params(args.params, "train_cam")
        cfg = params.cam_train
        cls_labels = load_cls_labels_npy(params.data.cls_labels_npy) if params.data.cls_labels_npy else None
        record = StepRecord("train_cam", params.model_dump(mode="json"), seed=cfg.seed)
        summary = train_cam(
            cfg,
            args.root,
            args.split,
            args.variant,
            args.out,
            support_ckpt=args.support,
            losses_csv=args.losses,
            cls_labels=cls_labels,
            device=args.device,
            stop_after_epoch=args.stop_after_epoch,
            progress=not args.quiet,
        )
        _cli.record_training(
            record, args.out, summary, {"variant": args.variant, "support": args.support, "split": args.split}
        )
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
