"""Train IRN's class-boundary branch on confident labels (make_ir_labels output).

Inputs:  --labels (make_ir_labels folder), --root (VOC2012 folder), --split (train_aug),
         --params (reads the values of ``pixsup.config.STEP_KEYS["train_irn"]``), --cam-model (the CAM network
         the labels came from; needed with ``pseudo_labels.irn.pretrained: cam``).
Outputs: --out (``pixsup.irn/1`` torch file: params and weights), ``<out>.losses.csv``
         (per iteration: epoch, iteration, lr, loss, bg_pos, fg_pos, neg) or --losses,
         ``<out>.meta.json``. While running: ``<out>.resume.pt`` after every epoch;
         rerunning the same command resumes from it.
Several GPUs: run it under ``python -m pixsup.runtime.launch --nproc N --``;
         pseudo_labels.irn.batch_size stays the global batch and only rank 0 writes.

Example:
  python -m pixsup.steps.train_irn --params params.yaml --root data/synthetic/VOC2012 \\
      --labels results/synthetic/seed0/pseudo_labels/full/ir_labels --cam-model results/synthetic/seed0/full/model.pt \\
      --out results/synthetic/seed0/pseudo_labels/full/irn.pt
"""

from __future__ import annotations

from ..config import load_step_params
from ..provenance import StepRecord
from ..pseudo_labels.boundary import train_irn
from ..runtime.launch_env import launch_rank
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("train_irn", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--labels", required=True, help="confident labels folder (make_ir_labels)")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train_aug", help="split to train on (default: train_aug)")
    p.add_argument("--cam-model", default=None, help="CAM network checkpoint (for pretrained: cam)")
    p.add_argument("--out", required=True, help="boundary network file to write")
    _cli.add_training_arguments(p)
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log, rank=launch_rank())

    def body() -> int:
        params = load_step_params(args.params, "train_irn")
        cfg = params.pseudo_labels.irn
        record = StepRecord("train_irn", params.model_dump(mode="json"), seed=cfg.seed)
        summary = train_irn(
            cfg,
            args.root,
            args.split,
            args.labels,
            args.out,
            cam_checkpoint=args.cam_model,
            losses_csv=args.losses,
            device=args.device,
            stop_after_epoch=args.stop_after_epoch,
            progress=not args.quiet,
        )
        _cli.record_training(record, args.out, summary, {"labels": args.labels})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
