"""Assemble ``results/{dataset}/paper/``: tables, figures and a README with provenance."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..evaluation.intervals import mean_sd
from ..files import write_json, write_text
from ..provenance import git_commit
from . import figures, tables

TABLES = ("seeds_masks", "segmentation", "ablation")
FIGURES = ("cam_gallery", "threshold_curves", "ablation_intervals", "loss_curves")


@dataclass
class ReportInputs:
    """Everything the report reads. Metrics maps are name -> metrics JSON of each run of
    experiment.seeds (in seed order); loss files and CAM folders are of the first run."""

    dataset: str
    root: str
    backbone: str
    seg_backbone: str
    seed_metrics: dict[str, list[str]]
    loss_files: dict[str, str]
    cam_dirs: dict[str, str]
    gallery_ids: list[str]
    params: dict[str, Any]
    mask_metrics: dict[str, list[str]] = field(default_factory=dict)
    seg_metrics: dict[str, list[str]] = field(default_factory=dict)
    peers_file: str | None = None
    dvc_lock: str | None = "dvc.lock"
    mask_method: str = "irn"
    seg_trained_on: str = ""
    test_skipped: str | None = None  # why there is no test submission, when there is none
    seed_images: dict[str, list[str]] = field(default_factory=dict)  # variant -> eval_cams --per-image npz
    mask_images: dict[str, list[str]] = field(default_factory=dict)  # variant:method -> eval_masks --per-image npz
    bootstrap_samples: int = 2000


def _read_confusions(path: str, metrics: dict[str, Any]) -> tuple[list[str], np.ndarray]:
    """Ids and per-image confusions of eval_cams or eval_masks ``--per-image``; they must be of the
    metrics they sit beside (eval_cams': at their best threshold)."""
    with np.load(path) as data:
        ids, confusions = [str(i) for i in data["ids"]], data["confusion"]
        threshold = float(data["threshold"]) if "threshold" in data else None
    step = "eval_cams" if "best_threshold" in metrics else "eval_masks"
    if len(confusions) != metrics["images"] or (step == "eval_cams" and threshold != metrics["best_threshold"]):
        at = f" at threshold {threshold}" if step == "eval_cams" else ""
        want = f" at {metrics['best_threshold']}" if step == "eval_cams" else ""
        raise ValueError(
            f"{path}: per-image confusions{at} for {len(confusions)} images, but the metrics beside them are"
            f"{want} for {metrics['images']}: rerun {step}"
        )
    return ids, confusions


def _paired_confusions(
    images: dict[str, list[str]], runs: dict[str, list[dict[str, Any]]]
) -> dict[str, list[tuple[list[str], np.ndarray]]]:
    return {
        name: [_read_confusions(path, metrics) for path, metrics in zip(paths, runs[name], strict=True)]
        for name, paths in images.items()
    }


def _same_images(*groups: dict[str, list[tuple[list[str], np.ndarray]]]) -> dict[str, list[np.ndarray]]:
    """The confusions of every name, after checking that run r of every name scores the same images in the
    same order (a paired difference compares image with image)."""
    flat = {name: runs for group in groups for name, runs in group.items()}
    if flat:
        reference_name, reference = next(iter(flat.items()))
        for name, runs in flat.items():
            for run, ((ids, _), (ref_ids, _)) in enumerate(zip(runs, reference, strict=True)):
                if ids != ref_ids:
                    raise ValueError(
                        f"per-image confusions of {name} and {reference_name} (run {run + 1}) are of different "
                        "images: they cannot be paired"
                    )
    return {name: [confusion for _, confusion in runs] for name, runs in flat.items()}


def _read_json(path: str) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def params_hash(params: dict[str, Any]) -> str:
    """SHA-256 of the resolved params, key order independent."""
    return hashlib.sha256(json.dumps(params, sort_keys=True).encode()).hexdigest()


def dataset_hash(dvc_lock: str | os.PathLike | None, root: str) -> str | None:
    """The DVC hash of the dataset folder from ``dvc.lock`` (the prepare_data stage's output), if recorded."""
    if dvc_lock is None or not Path(dvc_lock).is_file():
        return None
    lock = yaml.safe_load(Path(dvc_lock).read_text()) or {}
    wanted = os.path.normpath(root)
    for stage in (lock.get("stages") or {}).values():
        for out in stage.get("outs") or []:
            if os.path.normpath(out.get("path", "")) == wanted:
                return out.get("md5")
    return None


def _aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Metrics of the runs of experiment.seeds as one: ``miou`` the mean, ``miou_sd`` the sample sd
    (None for one run), ``runs``; for seeds also the mean ``best_threshold`` and the mean curve."""
    mean, sd = mean_sd([run["miou"] for run in runs])
    merged: dict[str, Any] = {
        "miou": runs[0]["miou"] if len(runs) == 1 else round(mean, 3),
        "miou_sd": None if sd is None else round(sd, 3),
        "runs": len(runs),
    }
    if "best_threshold" in runs[0]:
        merged["best_threshold"] = round(float(np.mean([run["best_threshold"] for run in runs])), 4)
        merged["curve"] = [
            {
                "threshold": point["threshold"],
                "miou": round(float(np.mean([run["curve"][i]["miou"] for run in runs])), 3),
            }
            for i, point in enumerate(runs[0]["curve"])
        ]
    return merged


def build_report(inputs: ReportInputs, out_dir: str | os.PathLike) -> dict[str, list[Path]]:
    """Write every table and figure into ``out_dir`` and a README linking them; return the files by name."""
    out = Path(out_dir)
    seed_runs = {name: [_read_json(path) for path in paths] for name, paths in inputs.seed_metrics.items()}
    seeds = {name: _aggregate(runs) for name, runs in seed_runs.items()}
    segs = {name: _aggregate([_read_json(path) for path in paths]) for name, paths in inputs.seg_metrics.items()}
    sources = {
        name: f"this run: {', '.join(paths)}"
        for name, paths in {**inputs.seed_metrics, **inputs.mask_metrics, **inputs.seg_metrics}.items()
    }
    peers = tables.load_peers(inputs.peers_file)
    mask_runs = {name: [_read_json(path) for path in paths] for name, paths in inputs.mask_metrics.items()}
    masks = {name: _aggregate(runs) for name, runs in mask_runs.items()}
    paired = _same_images(
        _paired_confusions(inputs.seed_images, seed_runs), _paired_confusions(inputs.mask_images, mask_runs)
    )
    confusions = {name: paired[name] for name in inputs.seed_images}
    mask_confusions = {name: paired[name] for name in inputs.mask_images}
    ablation = tables.ablation_table(
        seed_runs, inputs.backbone, inputs.dataset, confusions or None, inputs.bootstrap_samples
    )
    seeds_masks = tables.seeds_masks_table(
        seeds,
        masks,
        sources,
        inputs.backbone,
        peers,
        inputs.dataset,
        inputs.mask_method,
        confusions or None,
        mask_confusions or None,
        inputs.bootstrap_samples,
    )
    written: dict[str, list[Path]] = {
        "seeds_masks": tables.write_table(seeds_masks, out / "tables" / "seeds_masks"),
        "segmentation": tables.write_table(
            tables.segmentation_table(
                segs, sources, inputs.seg_backbone, peers, inputs.dataset, inputs.seg_trained_on, inputs.test_skipped
            ),
            out / "tables" / "segmentation",
        ),
        "ablation": tables.write_table(ablation, out / "tables" / "ablation"),
        "cam_gallery": figures.cam_gallery(
            inputs.root, inputs.gallery_ids, inputs.cam_dirs, out / "figures" / "cam_gallery"
        ),
        "threshold_curves": figures.threshold_curves(seeds, out / "figures" / "threshold_curves"),
        "ablation_intervals": figures.ablation_intervals(ablation, out / "figures" / "ablation_intervals"),
        "loss_curves": figures.loss_curves(inputs.loss_files, out / "figures" / "loss_curves"),
    }
    provenance = {
        "git_commit": git_commit(),
        "dataset_hash": dataset_hash(inputs.dvc_lock, inputs.root),
        "params_hash": params_hash(inputs.params),
        "date_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    summary = {
        "runs": max(len(runs) for runs in seed_runs.values()),
        "seed_miou": {name: m["miou"] for name, m in seeds.items()},
        "seed_miou_sd": {name: m["miou_sd"] for name, m in seeds.items()},
        "seed_best_threshold": {name: m["best_threshold"] for name, m in seeds.items()},
        "mask_miou": {name.replace(":", "/"): m["miou"] for name, m in masks.items()},
        "mask_miou_sd": {name.replace(":", "/"): m["miou_sd"] for name, m in masks.items()},
        "mask_vs_seeds": {name.replace(":", "/"): v for name, v in seeds_masks.attrs["mask_vs_seeds"].items()},
        "val_miou": {name: m["miou"] for name, m in segs.items()},
        "val_miou_sd": {name: m["miou_sd"] for name, m in segs.items()},
        "seed_miou_difference": {
            row["variant"]: {
                stem: [row[stem], row[f"{stem}_low"], row[f"{stem}_high"]]
                for stem in tables.DIFFERENCE_COLUMNS.values()
                if row[stem] is not None and not pd.isna(row[stem])
            }
            for row in ablation.to_dict("records")
        },
    }
    write_json(out / "summary.json", summary)
    written["summary"] = [out / "summary.json"]
    write_text(out / "README.md", _readme(written, provenance, inputs, out))
    return written


def _readme(written: dict[str, list[Path]], provenance: dict[str, Any], inputs: ReportInputs, out: Path) -> str:
    def links(name: str) -> str:
        return ", ".join(f"[{p.suffix[1:]}]({p.relative_to(out).as_posix()})" for p in written[name])

    lines = [
        "# Paper tables and figures",
        "",
        "Generated by `make_report` from the metrics JSON files of this run; do not edit by hand.",
        "",
        "## Provenance",
        "",
        f"- git commit: `{provenance['git_commit'] or 'unknown (not a git checkout)'}`",
        f"- dataset: `{inputs.root}`, DVC hash "
        f"`{provenance['dataset_hash'] or 'not recorded (run through dvc repro to record it)'}`",
        f"- params hash (SHA-256 of the resolved params): `{provenance['params_hash']}`",
        f"- date: {provenance['date_utc']}",
        "",
        "## Tables",
        "",
    ]
    captions = {
        "seeds_masks": "seed and mask mIoU on train beside published peers",
        "segmentation": "segmentation val/test mIoU beside published peers",
        "ablation": "which module does what (seed mIoU on train)",
    }
    lines += [f"- {name}: {captions[name]}: {links(name)}" for name in TABLES]
    lines += [
        "",
        "## Figures",
        "",
        f"- CAM gallery (image, ground truth, CAMs of {', '.join(inputs.cam_dirs)}): {links('cam_gallery')}",
        f"- seed mIoU against the background threshold (mean over runs): {links('threshold_curves')}",
        f"- each variant's seed-mIoU difference to the baselines with its 95 % interval: {links('ablation_intervals')}",
        f"- training losses per epoch: {links('loss_curves')}",
        "",
        f"Every number of the tables in one file (DVC's metrics): {links('summary')}",
        "",
        "## Inputs",
        "",
    ]
    for what, files in (
        ("seeds", inputs.seed_metrics),
        ("masks", inputs.mask_metrics),
        ("segmentation", inputs.seg_metrics),
    ):
        lines += [f"- {what} `{name}`: {', '.join(f'`{path}`' for path in paths)}" for name, paths in files.items()]
    return "\n".join(lines) + "\n"
