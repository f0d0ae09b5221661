"""Pretrain the ``tiny`` backbone on the generated source dataset: what ImageNet is to the ResNets.

The source dataset (pixsup.data.source_parts) has 24 classes, each a texture of object parts; images
are drawn afresh every epoch and never stored. ``cam_train.pretrained: auto`` on ``tiny`` loads the
result from results/pretrained/tiny_parts.pth (the workflow writes it there).

Inputs:  --params (reads the values of ``pixsup.config.STEP_KEYS["pretrain_backbone"]``: ``pretrain``).
Outputs: --out (the backbone's state dict, a torch file), ``<out>.losses.csv`` (epoch, iteration, lr,
         loss per iteration; or --losses), ``<out>.meta.json`` (params, commit, versions, timing, and
         the accuracy on held-out source images). While running: ``<out>.resume.pt`` after every
         epoch; rerunning the same command resumes from it.

Example:
  python -m pixsup.steps.pretrain_backbone --params params.yaml --out results/pretrained/tiny_parts.pth
"""

from __future__ import annotations

from ..config import load_step_params
from ..pretraining import pretrain_backbone
from ..provenance import StepRecord
from ..runtime.launch_env import launch_rank
from . import _cli


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("pretrain_backbone", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--out", required=True, help="weights file of the pretrained backbone")
    _cli.add_training_arguments(p)
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log, rank=launch_rank())

    def body() -> int:
        params = load_step_params(args.params, "pretrain_backbone")
        cfg = params.pretrain
        record = StepRecord("pretrain_backbone", params.model_dump(mode="json"), seed=cfg.seed)
        summary = pretrain_backbone(
            cfg,
            args.out,
            losses_csv=args.losses,
            device=args.device,
            stop_after_epoch=args.stop_after_epoch,
            progress=not args.quiet,
        )
        _cli.record_training(record, args.out, summary, {})
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
