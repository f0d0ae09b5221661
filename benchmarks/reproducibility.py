"""python -m benchmarks.reproducibility: how far the default's numbers move with the CPU's code paths.

Runs the quality tests (tests/test_quality.py: the synthetic default's seed mIoU of
the same-budget baseline and the full method, IRN's masks and the segmentation
network trained on them) once per setting, each in a fresh process, and prints
the numbers they measure with the spread over settings, and whether the trained
full-method weights are bit-identical to the first setting's. Settings:

- ``native``: this machine as it is (all oneDNN/MKL kernels it has, 2 threads);
- ``avx2``: oneDNN limited to AVX2 (ONEDNN_MAX_CPU_ISA=AVX2), the convolution
  kernels of an x86 CPU without AVX-512;
- ``1-thread``: OMP_NUM_THREADS=1 (another reduction order);
- ``native-again``: the first setting once more (same machine and pins), on request.

About 30 minutes on 2 cores for the first three. The README's reproducibility statement and the
margins of the quality tests come from these figures.

Example:
  python -m benchmarks.reproducibility --out benchmarks/out/reproducibility.json
  python -m benchmarks.reproducibility --only native avx2
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pixsup.checkpoints import load_cam_net, weights_sha256
from pixsup.files import write_text

REPO = Path(__file__).resolve().parents[1]
SETTINGS: dict[str, dict[str, str]] = {
    "native": {},
    "avx2": {"ONEDNN_MAX_CPU_ISA": "AVX2"},
    "1-thread": {"OMP_NUM_THREADS": "1"},
    "native-again": {},
}
SEEDS = re.compile(r"same-budget baseline ([\d.]+), full ([\d.]+)")
MASKS = re.compile(r"irn mask mIoU ([\d.]+) on train; segmentation val mIoU ([\d.]+)")
COLUMNS = ("baseline", "full", "gain", "irn_masks", "seg_val")


def measure(name: str, env: dict[str, str]) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"repro-{name}-") as basetemp:
        started = time.perf_counter()
        result = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-m", "slow", "-p", "no:cacheprovider", "--basetemp", basetemp]
            + ["tests/test_quality.py"],
            cwd=REPO,
            env={**os.environ, **env},
            capture_output=True,
            text=True,
        )
        seeds, masks = SEEDS.search(result.stdout), MASKS.search(result.stdout)
        if not (seeds and masks):
            raise SystemExit(f"error: {name}: the quality tests printed no numbers:\n{result.stdout[-3000:]}")
        full_weights = next(Path(basetemp).glob("quality*/full.pt"))
        baseline, full = float(seeds.group(1)), float(seeds.group(2))
        return {
            "setting": name,
            "env": env,
            "baseline": baseline,
            "full": full,
            "gain": round(full - baseline, 2),
            "irn_masks": float(masks.group(1)),
            "seg_val": float(masks.group(2)),
            "full_weights": weights_sha256(load_cam_net(full_weights)[0])[:16],
            "tests_passed": result.returncode == 0,
            "seconds": round(time.perf_counter() - started, 1),
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.reproducibility",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--only", nargs="+", choices=list(SETTINGS), default=["native", "avx2", "1-thread"], help="settings to run"
    )
    parser.add_argument("--out", default=None, help="also write the records as JSON here")
    args = parser.parse_args(argv)
    rows = []
    for name in args.only:
        print(f"running the quality tests: {name} {SETTINGS[name]} ...", file=sys.stderr, flush=True)
        rows.append(measure(name, SETTINGS[name]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    print(f"{'setting':<14}" + "".join(f"{c:>11}" for c in COLUMNS) + "  full weights      passed  seconds")
    for row in rows:
        same = "same" if row["full_weights"] == rows[0]["full_weights"] else "differ"
        print(
            f"{row['setting']:<14}"
            + "".join(f"{row[c]:>11.2f}" for c in COLUMNS)
            + f"  {row['full_weights']} ({same})  {row['tests_passed']!s:<6}  {row['seconds']:.0f}"
        )
    spread = {c: round(max(r[c] for r in rows) - min(r[c] for r in rows), 2) for c in COLUMNS}
    print(f"{'spread':<14}" + "".join(f"{spread[c]:>11.2f}" for c in COLUMNS))
    if args.out:
        write_text(args.out, json.dumps({"rows": rows, "spread": spread}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
