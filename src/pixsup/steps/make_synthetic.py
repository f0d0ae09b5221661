"""Generate the embedded synthetic dataset (badge-versus-body objects) in the VOC 2012 layout.

Inputs: ``--params``, of which only the ``data.synthetic`` section is read.
Outputs: the ``--out`` folder (a VOC2012 root): ``JPEGImages/``,
``SegmentationClass/`` (train, val), ``SegmentationClassAug/`` (train_aug, val),
``Annotations/``, ``ImageSets/Segmentation/{train,train_aug,val}.txt`` (written
last) and ``synthetic.json`` (config, class colours, badge codes, statistics);
and ``<out>.meta.json`` (provenance).
Config section: ``data.synthetic`` (``pixsup.config.SyntheticConfig``).

Usage::

    python -m pixsup.steps.make_synthetic --params params.yaml --out data/synthetic/VOC2012
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import load_params
from ..data.synthetic import generate_synthetic
from ..provenance import StepRecord
from . import _cli

log = logging.getLogger("pixsup.make_synthetic")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad params file)."""
    parser = _cli.parser("make_synthetic", __doc__)
    _cli.add_params_argument(parser)
    parser.add_argument("--out", required=True, type=Path,
                        help="the VOC2012 folder to write (created; generator files of an earlier run are replaced)")
    _cli.add_common_arguments(parser)
    args = parser.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        cfg = load_params(args.params).data.synthetic
        record = StepRecord("make_synthetic", params=cfg.model_dump(mode="json"), seed=cfg.seed)
        summary = generate_synthetic(args.out, cfg, progress=not args.quiet)
        record.write(args.out, extra={"counts": summary["counts"]})
        badge = summary["statistics"]["train_aug"]["badge_fraction_of_object_pixels"]
        log.info("wrote %s to %s (badge share of object pixels in train_aug: %.3f)", summary["counts"], args.out, badge)
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
