"""The paper's tables, built only from metrics JSON files and the peer numbers file.

Each table is a pandas DataFrame written three ways: ``.csv`` (exact numbers),
``.md`` (GitHub markdown) and ``.tex`` (a booktabs ``tabular``). Missing values
are empty cells in CSV and an en dash in markdown and LaTeX.
"""

from __future__ import annotations

import math
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from ..evaluation.intervals import mean_sd, paired_difference
from ..files import atomic_path, write_text

# The ablation's rows: (variant name in results/, row label, RCM on, MAM on).
ABLATION_ROWS = (
    ("support", "baseline", False, False),
    ("baseline_same_budget", "baseline (same budget)", False, False),
    ("rcm", "rcm", True, False),
    ("mam", "mam", False, True),
    ("full", "full", True, True),
)
# Differences reported in the ablation: reference variant -> column stem.
DIFFERENCE_COLUMNS = {"baseline_same_budget": "vs_same_budget", "support": "vs_support"}
ABLATION_COLUMNS = [
    "variant",
    "rcm",
    "mam",
    "seeds",
    "seed_miou",
    "seed_miou_sd",
    "best_threshold",
    *(f"{stem}{end}" for stem in DIFFERENCE_COLUMNS.values() for end in ("", "_low", "_high")),
    "interval_includes_0",
]
SEEDS_MASKS_COLUMNS = [
    "method",
    "backbone",
    "seed_miou",
    "seed_miou_sd",
    "mask_miou",
    "mask_miou_sd",
    "mask_vs_seeds",
    "mask_vs_seeds_low",
    "mask_vs_seeds_high",
    "source",
]
SEGMENTATION_COLUMNS = ["method", "backbone", "val_miou", "val_miou_sd", "test_miou", "source"]


def load_peers(path: str | os.PathLike | None = None) -> list[dict[str, Any]]:
    """Published peer numbers: the given YAML, or the one shipped with the package."""
    if path is None:
        text = resources.files("pixsup.report").joinpath("peers.yaml").read_text()
    else:
        text = Path(path).read_text()
    peers = (yaml.safe_load(text) or {}).get("peers", [])
    for peer in peers:
        if not peer.get("method") or not peer.get("source"):
            raise ValueError(f"{path or 'peers.yaml'}: every peer needs a method and a source, got {peer}")
    return peers


def ablation_table(
    seed_metrics: dict[str, list[dict[str, Any]]],
    backbone: str,
    dataset: str,
    confusions: dict[str, list[np.ndarray]] | None = None,
    samples: int = 2000,
) -> pd.DataFrame:
    """Rows of :data:`ABLATION_ROWS` whose metrics exist.

    ``seed_metrics`` maps variant -> eval_cams JSON of each training seed; the row shows their mean
    and sample standard deviation. With ``confusions`` (variant -> per-image confusions of each seed,
    eval_cams ``--per-image``), each row also gives its difference to the same-budget baseline and
    to the SupportNet with a 95 % paired bootstrap interval (:mod:`pixsup.evaluation.intervals`),
    and says which intervals include 0.
    """
    rows = []
    for name, label, rcm, mam in ABLATION_ROWS:
        if name not in seed_metrics:
            continue
        runs = seed_metrics[name]
        mean, sd = mean_sd([run["miou"] for run in runs])
        row: dict[str, Any] = {
            "variant": label,
            "rcm": rcm,
            "mam": mam,
            "seeds": len(runs),
            "seed_miou": round(mean, 3),
            "seed_miou_sd": None if sd is None else round(sd, 3),
            "best_threshold": round(float(np.mean([run["best_threshold"] for run in runs])), 3),
        }
        includes_zero = []
        for reference, column in DIFFERENCE_COLUMNS.items():
            if confusions is None or name == reference or reference not in confusions or name not in confusions:
                row.update({column: None, f"{column}_low": None, f"{column}_high": None})
                continue
            diff = paired_difference(confusions[name], confusions[reference], samples=samples)
            row.update(
                {
                    column: round(diff.difference, 3),
                    f"{column}_low": round(diff.low, 3),
                    f"{column}_high": round(diff.high, 3),
                }
            )
            if not diff.excludes_zero:
                includes_zero.append(column)
        row["interval_includes_0"] = ", ".join(includes_zero)
        rows.append(row)
    table = pd.DataFrame(rows, columns=ABLATION_COLUMNS)
    seeds = sorted({len(v) for v in seed_metrics.values()})
    table.attrs["caption"] = (
        f"Ablation on {dataset} train ({backbone}): seed mIoU (%) at the best background threshold, mean "
        f"(and sd) over {'/'.join(map(str, seeds))} training seed(s); differences in points to the same-budget "
        "baseline and to the SupportNet with 95 % intervals (paired bootstrap over images, combined over seeds)."
    )
    return table


def seeds_masks_table(
    seed_metrics: dict[str, dict[str, Any]],
    mask_metrics: dict[str, dict[str, Any]],
    sources: dict[str, str],
    backbone: str,
    peers: list[dict[str, Any]],
    dataset: str,
    mask_method: str = "irn",
    seed_confusions: dict[str, list[np.ndarray]] | None = None,
    mask_confusions: dict[str, list[np.ndarray]] | None = None,
    samples: int = 2000,
) -> pd.DataFrame:
    """Our variants (seed, and mask where pseudo masks were evaluated) above the published peers.

    ``mask_metrics`` maps ``"<variant>:<method>"`` to eval_masks JSON. A variant's own row shows
    the masks of ``mask_method``; every other method gets a row of its own below it. A metrics
    dict may carry ``miou_sd``, the sd over training runs (shown as "mean ± sd"). With per-image
    confusions of the seeds (variant -> one array per run) and of the masks (``"<variant>:<method>"``
    -> one per run, the same images in the same order), a mask row also gives the masks' mIoU minus
    their own seeds' with a 95 % paired bootstrap interval (``mask_vs_seeds``).
    """

    def versus_seeds(name: str, key: str) -> dict[str, Any]:
        if not seed_confusions or not mask_confusions or name not in seed_confusions or key not in mask_confusions:
            return {}
        diff = paired_difference(mask_confusions[key], seed_confusions[name], samples=samples)
        differences[key] = [round(diff.difference, 3), round(diff.low, 3), round(diff.high, 3)]
        return dict(zip(("mask_vs_seeds", "mask_vs_seeds_low", "mask_vs_seeds_high"), differences[key]))

    differences: dict[str, list[float]] = {}
    rows = []
    for name, label, _, _ in ABLATION_ROWS:
        if name not in seed_metrics:
            continue
        main = mask_metrics.get(f"{name}:{mask_method}")
        rows.append(
            {
                "method": f"ours: {label}" + (f" + {mask_method} masks" if main else ""),
                "backbone": backbone,
                "seed_miou": seed_metrics[name]["miou"],
                "seed_miou_sd": seed_metrics[name].get("miou_sd"),
                "mask_miou": main["miou"] if main else None,
                "mask_miou_sd": main.get("miou_sd") if main else None,
                **(versus_seeds(name, f"{name}:{mask_method}") if main else {}),
                "source": sources[name] + (f"; {sources[f'{name}:{mask_method}']}" if main else ""),
            }
        )
        for key, metrics in mask_metrics.items():
            variant, method = key.split(":")
            if variant == name and method != mask_method:
                rows.append(
                    {
                        "method": f"ours: {label} + {method} masks",
                        "backbone": backbone,
                        "seed_miou": seed_metrics[name]["miou"],
                        "seed_miou_sd": seed_metrics[name].get("miou_sd"),
                        "mask_miou": metrics["miou"],
                        "mask_miou_sd": metrics.get("miou_sd"),
                        **versus_seeds(name, key),
                        "source": sources[key],
                    }
                )
    for peer in peers:
        if "seed" in peer or "mask" in peer:
            rows.append(
                {
                    "method": peer["method"],
                    "backbone": peer.get("backbone"),
                    "seed_miou": peer.get("seed"),
                    "mask_miou": peer.get("mask"),
                    "source": peer["source"],
                }
            )
    table = pd.DataFrame(rows, columns=SEEDS_MASKS_COLUMNS)
    table.attrs["caption"] = (
        f"CAM seed and pseudo-mask mIoU (%) on train; ours on {dataset} (mean ± sd over training runs; "
        "masks minus their seeds in points with a 95 % interval, paired bootstrap over images), peers as "
        "published on PASCAL VOC 2012."
    )
    # "<variant>:<method>" -> [masks minus seeds, 95 % low, high], for the summary.
    table.attrs["mask_vs_seeds"] = differences
    return table


SEG_MODE_LABELS = {"ss": "single scale", "ms": "multi-scale + flip"}


def segmentation_table(
    seg_metrics: dict[str, dict[str, Any]],
    sources: dict[str, str],
    backbone: str,
    peers: list[dict[str, Any]],
    dataset: str,
    trained_on: str = "",
    test_skipped: str | None = None,
) -> pd.DataFrame:
    """Our val mIoU per inference mode (``seg_metrics`` maps ss/ms -> eval JSON) above the peers.

    Test mIoU of ours stays empty: it comes only from the evaluation server; ``test_skipped`` says
    why there is no submission, when there is none.
    """
    rows = [
        {
            "method": f"ours: {trained_on}, {SEG_MODE_LABELS.get(mode, mode)}".replace(": , ", ": "),
            "backbone": backbone,
            "val_miou": metrics["miou"],
            "val_miou_sd": metrics.get("miou_sd"),
            "test_miou": None,
            "source": sources[mode],
        }
        for mode, metrics in seg_metrics.items()
    ]
    rows += [
        {
            "method": peer["method"],
            "backbone": peer.get("backbone"),
            "val_miou": peer.get("val"),
            "test_miou": peer.get("test"),
            "source": peer["source"],
        }
        for peer in peers
        if "val" in peer or "test" in peer
    ]
    table = pd.DataFrame(rows, columns=SEGMENTATION_COLUMNS)
    test = f"no test submission: {test_skipped}" if test_skipped else "test: submit the tar to the evaluation server"
    table.attrs["caption"] = (
        f"Segmentation mIoU (%) on val and test; ours on {dataset} (mean ± sd over training runs; {test}), "
        "peers as published on PASCAL VOC 2012."
    )
    return table


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "✓" if value else ""
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def _display(table: pd.DataFrame) -> pd.DataFrame:
    """The table as read: ``X`` with ``X_sd`` becomes "mean ± sd", ``X`` with ``X_low``/``X_high``
    becomes "+d [low, high]" (the CSV keeps every number in its own column)."""
    shown = table.copy()
    for column in table.columns:
        if f"{column}_low" in table and f"{column}_high" in table:
            shown[column] = [
                None if v is None or pd.isna(v) else f"{v:+.2f} [{lo:+.2f}, {hi:+.2f}]"
                for v, lo, hi in zip(table[column], table[f"{column}_low"], table[f"{column}_high"])
            ]
            shown = shown.drop(columns=[f"{column}_low", f"{column}_high"])
        elif f"{column}_sd" in table:
            shown[column] = [
                v if sd is None or pd.isna(sd) else f"{v:.2f} ± {sd:.2f}"
                for v, sd in zip(table[column], table[f"{column}_sd"])
            ]
            shown = shown.drop(columns=[f"{column}_sd"])
    shown.attrs = table.attrs
    return shown


def to_markdown(table: pd.DataFrame) -> str:
    table = _display(table)
    lines = [
        f"{table.attrs.get('caption', '')}",
        "",
        "| " + " | ".join(table.columns) + " |",
        "|" + "---|" * len(table.columns),
    ]
    lines += [
        "| " + " | ".join(_cell(v).replace("|", "\\|") for v in row) + " |" for row in table.itertuples(index=False)
    ]
    return "\n".join(lines) + "\n"


_TEX_ESCAPES = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    text = "".join(_TEX_ESCAPES.get(ch, ch) for ch in text)
    return text.replace("✓", r"\checkmark").replace("–", "--").replace("±", r"$\pm$")


def to_latex(table: pd.DataFrame) -> str:
    table = _display(table)
    align = "".join(
        "r" if pd.api.types.is_numeric_dtype(table[c]) and table[c].dtype != bool else "l" for c in table.columns
    )
    lines = [
        f"% {table.attrs.get('caption', '')}",
        f"\\begin{{tabular}}{{{align}}}",
        "\\toprule",
        " & ".join(_tex(c) for c in table.columns) + r" \\",
        "\\midrule",
    ]
    lines += [" & ".join(_tex(_cell(v)) for v in row) + r" \\" for row in table.itertuples(index=False)]
    lines += ["\\bottomrule", "\\end{tabular}"]
    return "\n".join(lines) + "\n"


def write_table(table: pd.DataFrame, stem: str | os.PathLike) -> list[Path]:
    """Write ``<stem>.csv``, ``<stem>.md`` and ``<stem>.tex``; return their paths."""
    stem = Path(stem)
    paths = [stem.with_suffix(".csv"), stem.with_suffix(".md"), stem.with_suffix(".tex")]
    with atomic_path(paths[0]) as tmp:
        table.to_csv(tmp, index=False)
    write_text(paths[1], to_markdown(table))
    write_text(paths[2], to_latex(table))
    return paths
