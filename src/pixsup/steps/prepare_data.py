"""Prepare the dataset the workflow runs on: generate the synthetic one, or fetch PASCAL VOC 2012.

Inputs:  --params (reads ``data.dataset``, ``data.root``, and ``data.synthetic`` or the URLs and
         ``archive_dir`` of ``data.voc12``).
Outputs: the VOC2012 folder at ``data.root``
         (JPEGImages, SegmentationClass[Aug], Annotations, ImageSets/Segmentation);
         --out, a JSON manifest ``{"dataset", "root", "splits": {list name: number of ids},
         "archives": {name: {"kind", "url", "md5"}}}``; and ``<out>.meta.json``.

``synthetic``: writes the "badge versus body" dataset (docs/synthetic-data.md);
the same params give byte-identical files.
``voc12``: downloads the VOC 2012 trainval tar and SegmentationClassAug.zip
(``data.voc12``; their MD5s are recorded, and ``check_downloads`` compares them with
the pins before any step reads the data), unpacks them into ``data.root`` and writes
``train_aug.txt``. Parts already in ``data.root`` are kept: a lab that has a
VOCdevkit points ``data.root`` at its ``VOC2012`` folder and nothing is downloaded.

Example:
  python -m pixsup.steps.prepare_data --params params.yaml --out results/synthetic/data/prepared.json
"""

from __future__ import annotations

import logging
from pathlib import Path

from ..config import load_step_params
from ..data.download import prepare_voc12
from ..data.synthetic import generate_synthetic
from ..data.voc import read_split
from ..data.voc_format import SPLIT_DIR
from ..files import write_json
from ..provenance import StepRecord
from . import _cli

log = logging.getLogger("pixsup.prepare_data")


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (2 for a bad params file)."""
    parser = _cli.parser("prepare_data", __doc__)
    _cli.add_params_argument(parser)
    parser.add_argument("--root", default=None, help="VOC2012 folder to write (default: data.root)")
    parser.add_argument("--out", required=True, help="manifest JSON to write")
    _cli.add_common_arguments(parser)
    args = parser.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_step_params(args.params, "prepare_data")
        cfg = params.data
        root = Path(args.root or cfg.root)
        seed = cfg.synthetic.seed if cfg.dataset == "synthetic" else None
        record = StepRecord("prepare_data", params.model_dump(mode="json"), seed=seed)
        manifest: dict = {"dataset": cfg.dataset, "root": str(root), "archives": {}}
        if cfg.dataset == "synthetic":
            summary = generate_synthetic(root, cfg.synthetic, progress=not args.quiet)
            badge = summary["statistics"]["train_aug"]["badge_fraction_of_object_pixels"]
            log.info("wrote %s to %s (badge share of object pixels in train_aug: %.3f)", summary["counts"], root, badge)
        else:
            manifest["archives"] = prepare_voc12(root, cfg.voc12, progress=not args.quiet)["archives"]
        lists = sorted(p.stem for p in (root / SPLIT_DIR).glob("*.txt"))
        manifest["splits"] = {name: len(read_split(root, name)) for name in lists}
        write_json(args.out, manifest)
        record.write(args.out, extra={"splits": manifest["splits"]})
        log.info("%s at %s: %s", cfg.dataset, root, manifest["splits"])
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
