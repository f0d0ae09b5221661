"""Train IRN's class-boundary branch on confident labels (make_ir_labels output).

Inputs:  --labels (make_ir_labels folder), --root (VOC2012 folder), --split (train_aug),
         --params (reads section ``pseudo_labels.irn``), --cam-model (the CAM network
         the labels came from; needed with ``pseudo_labels.irn.pretrained: cam``).
Outputs: --out (``pixsup.irn/1`` torch file: params and weights), ``<out>.losses.csv``
         (per iteration: epoch, iteration, lr, loss, bg_pos, fg_pos, neg) or --losses,
         ``<out>.meta.json``. While running: ``<out>.resume.pt`` after every epoch;
         rerunning the same command resumes from it.

Example:
  python -m pixsup.steps.train_irn --params params.yaml --root data/synthetic/VOC2012 \\
      --labels results/synthetic/full/ir_labels --cam-model results/synthetic/full/model.pt \\
      --out results/synthetic/full/irn.pt
"""

from __future__ import annotations

from ..config import load_params, section_dict
from ..provenance import StepRecord
from ..pseudo_labels.irn import train_irn
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("train_irn", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--labels", required=True, help="confident labels folder (make_ir_labels)")
    p.add_argument("--root", required=True, help="VOC2012 folder")
    p.add_argument("--split", default="train_aug", help="split to train on (default: train_aug)")
    p.add_argument("--cam-model", default=None, help="CAM network checkpoint (for pretrained: cam)")
    p.add_argument("--out", required=True, help="boundary network file to write")
    p.add_argument("--losses", default=None, help="loss CSV (default: <out>.losses.csv)")
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_params(args.params)
        cfg = params.pseudo_labels.irn
        record = StepRecord("train_irn", section_dict(params, "pseudo_labels"), seed=cfg.seed)
        summary = train_irn(cfg, args.root, args.split, args.labels, args.out, cam_checkpoint=args.cam_model,
                            losses_csv=args.losses, device=args.device, progress=not args.quiet)
        record.write(args.out, extra={"summary": summary})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
