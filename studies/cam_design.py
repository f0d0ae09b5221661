"""Design study of the self-supervision terms on the synthetic default.

Trains the SupportNet (variant ``support``) once per seed, then each named row of
``ROWS`` for the same number of further epochs starting from it, dumps CAMs of
each chosen split and sweeps the background threshold. Prints a Markdown table
per split and adds its rows to ``<out>/study_<split>.json`` (``studies/study_table.py``
prints paired differences from them). Rows are config overrides of ``cam_train``
(or, for the inference-only rows, of ``cam_infer`` on a trained row's network), so
every variant studied here is also reachable from params.yaml.

  python studies/cam_design.py --params params.yaml --out results/study --split train
  python studies/cam_design.py --out results/study --split train val --seeds 0 1 2 \
      --rows baseline_2x full_one_sided_bg1_rcm0.1 full_one_sided_bg1_rcm0.1_proto_back0.5
  python studies/cam_design.py --out results/study_colour0.3 --set data.synthetic.body_class_colour_prob=0.3

The tables per split give each row per seed with its mean ± sample sd, and its paired differences
to the SupportNet and the same-budget baseline (``studies/study_table.py``).
"""

from __future__ import annotations

import argparse
import copy
import json
import time
from pathlib import Path

import yaml
from study_table import study_tables

from pixsup.cam.inference import dump_cams
from pixsup.cam.training import train_cam
from pixsup.checkpoints import load_cam_net
from pixsup.config import load_params, parse_params
from pixsup.data.datasets import CamInferDataset
from pixsup.data.synthetic import generate_synthetic
from pixsup.evaluation.metrics import sweep_thresholds
from pixsup.evaluation.scoring import evaluate_cams
from pixsup.files import write_json

# Rows are overrides of the method as docs/method.md first defines it (the
# literal reading of the paper), whatever params.yaml's defaults have become.
LITERAL = {
    "rcm.weight": 1.0,
    "rcm.regions": "support",
    "mam.weight": 1.0,
    "mam.fusion": "attention",
    "mam.dissimilarity": "abs",
    "mam.temperature": 2.0,
    "mam.one_sided": False,
    "mam.bg_weight": 0.0,
    "mam.scales": [0.5, 1.0, 1.5],
}

# name -> (variant, cam_train overrides as dotted keys)
ROWS: dict[str, tuple[str, dict[str, object]]] = {
    "baseline_2x": ("baseline_same_budget", {}),
    "rcm": ("rcm", {}),
    "mam_literal": ("mam", {}),
    "full_literal": ("full", {}),
    "mam_max": ("mam", {"mam.fusion": "max"}),
    "mam_mean": ("mam", {"mam.fusion": "mean"}),
    "mam_expand_T0.1": ("mam", {"mam.dissimilarity": "expand", "mam.temperature": 0.1}),
    "mam_one_sided": ("mam", {"mam.one_sided": True}),
    "mam_one_sided_bg1": ("mam", {"mam.one_sided": True, "mam.bg_weight": 1.0}),
    "mam_bg1": ("mam", {"mam.bg_weight": 1.0}),
    "mam_lambda0.3": ("mam", {"mam.weight": 0.3}),
    "mam_lambda3": ("mam", {"mam.weight": 3.0}),
    "mam_scales_0.5-2": ("mam", {"mam.scales": [0.5, 1.0, 2.0]}),
    "mam_max_one_sided_bg1": ("mam", {"mam.fusion": "max", "mam.one_sided": True, "mam.bg_weight": 1.0}),
    "mam_max_lambda3": ("mam", {"mam.fusion": "max", "mam.weight": 3.0}),
    "mam_expand_one_sided_bg1": (
        "mam",
        {"mam.dissimilarity": "expand", "mam.temperature": 0.1, "mam.one_sided": True, "mam.bg_weight": 1.0},
    ),
    "full_one_sided_bg1": ("full", {"mam.one_sided": True, "mam.bg_weight": 1.0}),
    "full_max_one_sided_bg1": ("full", {"mam.fusion": "max", "mam.one_sided": True, "mam.bg_weight": 1.0}),
    "rcm_multiscale": ("rcm", {"rcm.regions": "multiscale"}),
    "full_multiscale_one_sided_bg1": (
        "full",
        {"rcm.regions": "multiscale", "mam.one_sided": True, "mam.bg_weight": 1.0},
    ),
    "mam_one_sided_bg1_lambda3": ("mam", {"mam.one_sided": True, "mam.bg_weight": 1.0, "mam.weight": 3.0}),
    "rcm_weight0.1": ("rcm", {"rcm.weight": 0.1}),
    "rcm_bg_margin2": ("rcm", {"rcm.bg_margin": 2}),
    "rcm_memory4": ("rcm", {"rcm.memory": 4}),
    "full_one_sided_bg1_memory4": ("full", {"mam.one_sided": True, "mam.bg_weight": 1.0, "rcm.memory": 4}),
    "full_one_sided_bg1_margin2": ("full", {"mam.one_sided": True, "mam.bg_weight": 1.0, "rcm.bg_margin": 2}),
    "full_one_sided_bg1_rcm0.1": ("full", {"rcm.weight": 0.1, "mam.one_sided": True, "mam.bg_weight": 1.0}),
    "full_max": ("full", {"mam.fusion": "max"}),
    "full_expand_T0.1": ("full", {"mam.dissimilarity": "expand", "mam.temperature": 0.1}),
    "ema_mam_literal": ("mam", {"support.kind": "ema", "support.ema_momentum": 0.99}),
    "ema_full_literal": ("full", {"support.kind": "ema", "support.ema_momentum": 0.99}),
}

# name -> (row whose network it scores, cam_infer overrides): inference-only forms.
INFERENCE_ROWS: dict[str, tuple[str, dict[str, object]]] = {
    f"{row}_proto_{features[:4]}{threshold}": (
        row,
        {"refine.method": "prototype", "refine.features": features, "refine.threshold": threshold},
    )
    for row in (
        "support",
        "baseline_2x",
        "mam_one_sided_bg1",
        "rcm_weight0.1",
        "full_one_sided_bg1_rcm0.1",
        "full_one_sided_bg1",
    )
    for features in ("backbone", "projection")
    for threshold in (0.3, 0.5, 0.7)
}


def with_overrides(raw: dict, overrides: dict[str, object], section: str | None = "cam_train") -> dict:
    """``raw`` with dotted ``overrides`` set, below ``section`` (None: from the root)."""
    raw = copy.deepcopy(raw)
    for dotted, value in overrides.items():
        node = raw.setdefault(section, {}) if section else raw
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
        node[leaf] = value
    return raw


def _merged(path: Path, rows: list[dict]) -> list[dict]:
    """The rows already in ``path`` (earlier runs into the same folder), updated by ``rows``."""
    kept = json.loads(path.read_text()) if path.is_file() else []
    new = {(row["row"], row["seed"]) for row in rows}
    return [row for row in kept if (row["row"], row["seed"]) not in new] + rows


def score(model_path: Path, params, root: Path, split: str, cams_dir: Path) -> dict:
    model, _ = load_cam_net(model_path)
    model.eval()
    dump_cams(model, CamInferDataset(root, split), params.cam_infer, cams_dir, progress=False)
    e = params.cam_eval
    return evaluate_cams(
        cams_dir, root, split, sweep_thresholds(e.threshold_min, e.threshold_max, e.threshold_step), progress=False
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--params", default="params.yaml")
    parser.add_argument("--out", default="results/study")
    parser.add_argument("--split", nargs="+", default=["train"], help="splits scored (train to choose, val to confirm)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument(
        "--rows",
        nargs="+",
        default=list(ROWS),
        choices=[*ROWS, *INFERENCE_ROWS],
        metavar="ROW",
        help=f"rows to run (default: every trained row): {', '.join(ROWS)}; "
        f"inference-only: {', '.join(INFERENCE_ROWS)}",
    )
    parser.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=YAML", help="params values for every row (a data regime)"
    )
    args = parser.parse_args()
    out = Path(args.out)
    raw = json.loads(json.dumps(load_params(args.params).model_dump(mode="json")))
    settings = {key: yaml.safe_load(value) for key, _, value in (item.partition("=") for item in args.set)}
    raw = with_overrides(raw, settings, section=None)
    base = parse_params(raw)
    root = out / "data" / "VOC2012"
    if not (root / "ImageSets" / "Segmentation" / "val.txt").is_file():
        generate_synthetic(root, base.data.synthetic, progress=False)
    results: dict[str, list[dict]] = {split: [] for split in args.split}
    for seed in args.seeds:
        seeded = with_overrides(raw, {"seed": seed, **LITERAL})
        for name in ["support", *args.rows]:
            trained, infer_overrides = INFERENCE_ROWS.get(name, (name, {}))
            variant, overrides = ("support", {}) if trained == "support" else ROWS[trained]
            params = parse_params(with_overrides(with_overrides(seeded, overrides), infer_overrides, "cam_infer"))
            support = out / f"seed{seed}" / "support.pt"
            model = out / f"seed{seed}" / f"{trained}.pt"
            t0 = time.perf_counter()
            if not model.is_file():
                start = None if trained == "support" else support
                train_cam(params.cam_train, root, "train_aug", variant, model, support_ckpt=start, progress=False)
            seconds = round(time.perf_counter() - t0, 1)
            for split in args.split:
                scores = score(model, params, root, split, out / f"seed{seed}" / "cams" / split / name)
                row = {"row": name, "seed": seed, "split": split, "seconds": seconds}
                row.update({k: scores[k] for k in ("miou", "best_threshold")})
                print(json.dumps(row), flush=True)
                results[split].append(row)
    for split, rows in results.items():
        write_json(out / f"study_{split}.json", _merged(out / f"study_{split}.json", rows))
        print(f"\n## {split}\n\n{study_tables(rows, ['support', 'baseline_2x'])}")


if __name__ == "__main__":
    main()
