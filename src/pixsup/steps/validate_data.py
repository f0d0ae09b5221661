"""Check every item of one split of a VOC2012 folder and report all problems at once.

Inputs: ``<root>/ImageSets/Segmentation/<split>.txt`` and, for each listed id,
``JPEGImages/<id>.jpg``, ``SegmentationClass[Aug]/<id>.png`` and
``Annotations/<id>.xml`` (or the opt-in ``--cls-labels-npy``).
Outputs: one line per problem and a summary on stdout; with ``--report`` a JSON
file ``{"root", "split", "ids", "problems"}`` (``ids`` = number of distinct ids
checked). Exit status 1 when any problem is found, else 0.
Config section: none; the step takes paths only.

Example:
  python -m pixsup.steps.validate_data --root data/voc12/VOC2012 --split train --require-mask
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..data.validate import validate_images, validate_split
from ..data.voc import DataError, VocIndex, load_cls_labels_npy, read_split
from ..data.voc_format import SPLIT_DIR
from ..files import write_json
from . import _cli


def validate_data(
    root: str | os.PathLike,
    split: str,
    require_mask: bool,
    cls_labels_npy: str | os.PathLike | None = None,
    progress: bool = True,
    images_only: bool = False,
    optional: bool = False,
) -> dict[str, Any]:
    """Validate one split and return the report.

    Args:
        root: The VOC2012 folder.
        split: The list under ``ImageSets/Segmentation``.
        require_mask: Report ids without a mask.
        cls_labels_npy: Optional IRN ``cls_labels.npy`` (a pickle) as label source.
        progress: Show a progress bar on stderr.

    Returns:
        ``{"root", "split", "ids", "problems"}``; an unreadable split list or
        labels file is itself reported as a problem.
    """
    report: dict[str, Any] = {"root": str(root), "split": split, "ids": 0, "problems": []}
    if optional and not (Path(root) / SPLIT_DIR / f"{split}.txt").is_file():
        report["absent"] = True
        return report
    if images_only:
        try:
            report["ids"] = len(set(read_split(root, split, allow_duplicates=True)))
            report["problems"] = validate_images(VocIndex(root), split, progress)
        except DataError as exc:
            report["problems"].append(str(exc))
        return report
    try:
        cls_labels = load_cls_labels_npy(cls_labels_npy) if cls_labels_npy is not None else None
        report["ids"] = len(set(read_split(root, split, allow_duplicates=True)))
        report["problems"] = validate_split(VocIndex(root, cls_labels), split, require_mask, progress)
    except DataError as exc:
        report["problems"].append(str(exc))
    return report


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = _cli.parser("validate_data", __doc__)
    parser.add_argument(
        "--root",
        required=True,
        type=Path,
        help="The VOC2012 folder (holds JPEGImages, ImageSets, SegmentationClass, ...).",
    )
    parser.add_argument(
        "--split", required=True, help="Name of the id list in ImageSets/Segmentation, e.g. train, val, train_aug."
    )
    parser.add_argument(
        "--require-mask",
        action="store_true",
        help="Report ids that have no mask in SegmentationClass or SegmentationClassAug "
        "(use for splits that are evaluated against masks).",
    )
    parser.add_argument(
        "--cls-labels-npy",
        type=Path,
        default=None,
        help="Opt-in: take image-level labels from IRN's cls_labels.npy. It is a pickle: "
        "only pass a copy you trust. Default: Annotations/*.xml, else the mask.",
    )
    parser.add_argument(
        "--images-only",
        action="store_true",
        help="Check the images only (a split without masks or labels: test).",
    )
    parser.add_argument(
        "--optional",
        action="store_true",
        help="A split list that does not exist is no problem: the report says it is absent (test).",
    )
    parser.add_argument(
        "--report",
        type=Path,
        default=None,
        help="Also write the JSON report {root, split, ids, problems} to this file.",
    )
    args = parser.parse_args(argv)

    report = validate_data(
        args.root, args.split, args.require_mask, args.cls_labels_npy, images_only=args.images_only,
        optional=args.optional,
    )  # fmt: skip
    for problem in report["problems"]:
        print(problem)
    if report.get("absent"):
        print(f"no {args.split} split in {args.root}: nothing to check")
    else:
        print(f"{report['ids']} ids checked, {len(report['problems'])} problems")
    if args.report is not None:
        write_json(args.report, report)
    return 1 if report["problems"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
