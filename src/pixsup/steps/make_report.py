"""Regenerate the paper's tables and figures from the metrics JSON files of a run.

Inputs:  (a NAME given more than once in --seeds, --seed-images, --masks, --mask-images and --seg is the next
         training run of experiment.seeds: the tables give the mean and sd over runs)
         --seeds NAME=PATH ... (eval_cams JSON per variant: support, baseline_same_budget,
         rcm, mam, full), --seed-images NAME=PATH ... (eval_cams --per-image npz per variant: the
         ablation's 95 % intervals), --masks VARIANT:METHOD=PATH ... (eval_masks JSON of pseudo masks),
         --mask-images VARIANT:METHOD=PATH ... (eval_masks --per-image npz: masks against their seeds, 95 %),
         --seg ss=PATH ms=PATH (eval_seg JSON of val predictions), --losses NAME=PATH ... (train_cam
         loss CSVs), --cams NAME=DIR ... (CAM folders shown in the gallery, in column order), --root
         (VOC2012 folder),
         --params (the resolved params; reads ``report``, the backbones and
         ``pseudo_labels.method``, and hashes all of it for provenance), --dvc-lock (for the dataset hash),
         --test-preds (the make_test_submission folder: the report says when it was skipped).
Outputs: --out, a folder with ``tables/{seeds_masks,segmentation,ablation}.{csv,md,tex}``,
         ``figures/{cam_gallery,threshold_curves,ablation_intervals,loss_curves}.{png,pdf}``,
         ``summary.json`` (``seed_miou``, ``seed_best_threshold``, ``mask_miou`` by variant/method,
         ``val_miou`` by ss/ms, ``seed_miou_difference``: per ablation row, ``vs_same_budget`` and
         ``vs_support`` as [difference, 95 % low, 95 % high] in points; ``mask_vs_seeds``: per
         variant/method, the masks' mIoU minus their seeds' the same way) and ``README.md`` (links
         and provenance: git commit, dataset hash, params hash, date).

Example:
  python -m pixsup.steps.make_report --params params.yaml --root data/synthetic/VOC2012 \\
      --seeds support=results/synthetic/seed0/metrics/seeds_train_support.json \\
              full=results/synthetic/seed0/metrics/seeds_train_full.json \\
      --losses full=results/synthetic/seed0/full/losses.csv \\
      --cams baseline=results/synthetic/seed0/support/cams/train full=results/synthetic/seed0/full/cams/train \\
      --out results/synthetic/paper
"""

from __future__ import annotations

import json
from pathlib import Path

from ..config import load_step_params
from ..data.voc import read_split
from ..report.build import ReportInputs, build_report
from . import _cli


def _runs(values: list[str] | None, flag: str) -> dict[str, list[str]]:
    """NAME=PATH arguments as {name: [path, ...]}: a name given again is the next training run."""
    runs: dict[str, list[str]] = {}
    for value in values or []:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise SystemExit(f"error: {flag} takes NAME=PATH, got {value!r}")
        runs.setdefault(name, []).append(path)
    return runs


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    """NAME=PATH arguments of which each name is given once."""
    runs = _runs(values, flag)
    repeated = sorted(name for name, paths in runs.items() if len(paths) > 1)
    if repeated:
        raise SystemExit(f"error: {flag} gives {', '.join(repeated)} more than once")
    return {name: paths[0] for name, paths in runs.items()}


def _test_skipped(folder: str | None) -> str | None:
    """Why make_test_submission wrote no predictions, from its manifest; None when it did."""
    if folder is None:
        return None
    return json.loads((Path(folder) / "index.json").read_text()).get("skipped")


def main(argv: list[str] | None = None) -> int:
    p = _cli.parser("make_report", __doc__)
    _cli.add_params_argument(p)
    p.add_argument("--root", required=True, help="VOC2012 folder (gallery images and ground truth)")
    p.add_argument("--split", default="train", help="split the seeds were evaluated on (default: train)")
    for flag, what in (
        ("--seeds", "seed metrics JSON"),
        ("--seed-images", "per-image seed confusions (eval_cams --per-image)"),
        ("--masks", "pseudo-mask metrics JSON"),
        ("--mask-images", "per-image pseudo-mask confusions (eval_masks --per-image)"),
        ("--seg", "segmentation metrics JSON"),
        ("--losses", "train_cam loss CSV"),
        ("--cams", "CAM folder for the gallery"),
    ):
        p.add_argument(flag, nargs="+", metavar="NAME=PATH", help=what)
    p.add_argument(
        "--test-preds", default=None, help="the test submission's folder (make_test_submission): says if it was skipped"
    )
    p.add_argument("--dvc-lock", default="dvc.lock", help="dvc.lock to read the dataset hash from")
    p.add_argument("--out", required=True, help="report folder to write")
    _cli.add_common_arguments(p)
    args = p.parse_args(argv)
    _cli.setup_logging(args.log)

    def body() -> int:
        params = load_step_params(args.params, "make_report")
        ids = params.report.gallery_ids or read_split(args.root, args.split)[: params.report.gallery_size]
        inputs = ReportInputs(
            dataset=params.data.dataset,
            root=args.root,
            backbone=params.cam_train.backbone,
            seg_backbone=params.seg_train.backbone,
            mask_method=params.pseudo_labels.method,
            seg_trained_on=f"{params.pseudo_labels.variants[0]} + {params.pseudo_labels.method} masks",
            seed_metrics=_runs(args.seeds, "--seeds"),
            seed_images=_runs(args.seed_images, "--seed-images"),
            bootstrap_samples=params.report.bootstrap_samples,
            mask_metrics=_runs(args.masks, "--masks"),
            mask_images=_runs(args.mask_images, "--mask-images"),
            seg_metrics=_runs(args.seg, "--seg"),
            loss_files=_pairs(args.losses, "--losses"),
            cam_dirs=_pairs(args.cams, "--cams"),
            gallery_ids=list(ids),
            params=params.model_dump(mode="json"),
            peers_file=params.report.peers,
            dvc_lock=args.dvc_lock,
            test_skipped=_test_skipped(args.test_preds),
        )
        if not inputs.seed_metrics:
            raise SystemExit("error: --seeds needs at least one NAME=PATH")
        written = build_report(inputs, args.out)
        print(f"report: {sum(len(v) for v in written.values())} files in {Path(args.out)}")
        return 0

    return _cli.run(body)


if __name__ == "__main__":
    raise SystemExit(main())
