"""Tables of a design study (``studies/cam_design.py``): mean ± sd over seeds, and paired differences.

Reads the rows of one data regime from its ``study_<split>.json`` files or from the
printed logs of its runs (one JSON row per line), and prints per split each row's seed
mIoU per seed with its mean ± sample sd, then each row's difference to the reference
rows seed by seed (paired: the same seed's SupportNet and data), with the mean ± sd of
those differences. A row seen twice for a seed and split keeps its last value.

  python studies/study_table.py results/study/study_train.json results/study/study_val.json
  python studies/study_table.py study_weak.log --split val --against support baseline_2x
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from pixsup.evaluation.intervals import mean_sd


def _by_row(rows: list[dict]) -> dict[str, dict[int, float]]:
    table: dict[str, dict[int, float]] = {}
    for row in rows:
        table.setdefault(row["row"], {})[row["seed"]] = row["miou"]
    return table


def _signed(value: float) -> str:
    return f"{value:+.2f}"


def _mean_sd(values: list[float], signed: bool = False) -> str:
    mean, sd = mean_sd(values)
    shown = _signed(mean) if signed else f"{mean:.2f}"
    return shown if sd is None else f"{shown} ± {sd:.2f}"


def study_tables(rows: list[dict], against: list[str]) -> str:
    """Markdown: per-seed mIoU with mean ± sd, then paired differences to each row of ``against``."""
    table = _by_row(rows)
    seeds = sorted({seed for per_seed in table.values() for seed in per_seed})
    lines = ["| row | " + " | ".join(f"s{seed}" for seed in seeds) + " | mean ± sd |", "|---" * (len(seeds) + 2) + "|"]
    for name, per_seed in table.items():
        values = [per_seed[seed] for seed in seeds if seed in per_seed]
        cells = [f"{per_seed[seed]:.2f}" if seed in per_seed else "-" for seed in seeds]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | **{_mean_sd(values)}** |")
    lines += ["", "| difference | per seed | mean ± sd |", "|---|---|---|"]
    for reference in against:
        if reference not in table:
            continue
        for name, per_seed in table.items():
            if name == reference or name in against[: against.index(reference)]:
                continue  # itself, or a reference already compared with this one
            shared = [seed for seed in seeds if seed in per_seed and seed in table[reference]]
            differences = [per_seed[seed] - table[reference][seed] for seed in shared]
            if not differences:
                continue
            per = ", ".join(_signed(d) for d in differences)
            lines.append(f"| {name} - {reference} | {per} | {_mean_sd(differences, signed=True)} |")
    return "\n".join(lines)


def read_rows(path: Path) -> list[dict]:
    """The study rows of a ``study_<split>.json`` file or of a run's log (JSON rows, one per line)."""
    text = path.read_text()
    if text.lstrip().startswith("["):
        return json.loads(text)
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("files", nargs="+", type=Path, help="study_<split>.json files or run logs of one regime")
    parser.add_argument("--split", nargs="+", default=["train", "val"])
    parser.add_argument("--against", nargs="+", default=["support", "baseline_2x"], help="reference rows")
    args = parser.parse_args()
    rows = [row for path in args.files for row in read_rows(path)]
    for split in args.split:
        print(f"\n## {split}\n")
        print(study_tables([row for row in rows if row.get("split", split) == split], args.against))


if __name__ == "__main__":
    main()
