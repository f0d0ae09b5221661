"""The random walk on a VOC-sized image (500x375, stride-4 grid 94x125): ours against IRN's dense matrix.

Each variant runs in a fresh process so that its peak resident memory
(``ru_maxrss`` minus the process's memory right before the walk) is its own.
Both walk the same random boundary map and CAMs; the script checks that they
agree (labels and values) before it reports times, memories and ratios.

    python -m benchmarks.random_walk [--height 94 --width 125 --classes 3]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

import torch


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _inputs(height: int, width: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    boundary = torch.rand(height, width, generator=generator) ** 4
    cams = torch.rand(classes, height, width, generator=generator)
    return cams * (1 - boundary), boundary


def run_one(kind: str, height: int, width: int, classes: int, out: str) -> None:
    from pixsup.pseudo_labels.random_walk import dense_random_walk, random_walk

    x, boundary = _inputs(height, width, classes)
    walk = random_walk if kind == "ours" else dense_random_walk
    before = _rss_mb()
    started = time.perf_counter()
    result = walk(x, boundary, radius=5, beta=10.0, exp_times=8)
    seconds = time.perf_counter() - started
    torch.save(result, out)
    print(json.dumps({"kind": kind, "seconds": seconds, "peak_mb": _rss_mb() - before}))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.random_walk", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=94)
    parser.add_argument("--width", type=int, default=125)
    parser.add_argument("--classes", type=int, default=3)
    parser.add_argument("--one", choices=["ours", "dense"], help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        run_one(args.one, args.height, args.width, args.classes, args.out)
        return 0
    import tempfile
    from pathlib import Path

    records, results = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind in ("ours", "dense"):
            out = str(Path(tmp) / f"{kind}.pt")
            line = subprocess.run([sys.executable, "-m", "benchmarks.random_walk", "--one", kind, "--height",
                                   str(args.height), "--width", str(args.width), "--classes", str(args.classes),
                                   "--out", out], capture_output=True, text=True, check=True).stdout
            records[kind] = json.loads(line.strip().splitlines()[-1])
            results[kind] = torch.load(out)
    diff = (results["ours"] - results["dense"]).abs().max().item() / results["dense"].abs().max().item()
    same = (results["ours"].argmax(0) == results["dense"].argmax(0)).float().mean().item()
    print(f"grid {args.height}x{args.width} ({args.height * args.width} cells), {args.classes} classes, "
          f"radius 5, beta 10, 2^8 steps")
    print(f"{'':8} {'seconds':>9} {'peak MB':>9}")
    for kind in ("ours", "dense"):
        print(f"{kind:8} {records[kind]['seconds']:9.2f} {records[kind]['peak_mb']:9.1f}")
    print(f"ratio    {records['ours']['seconds'] / records['dense']['seconds']:9.3f} "
          f"{records['ours']['peak_mb'] / max(records['dense']['peak_mb'], 1e-9):9.4f}   (ours / dense)")
    print(f"agreement: max relative difference {diff:.2e}, same label on {same * 100:.2f}% of cells")
    if diff > 1e-3 or same < 0.999:
        print("error: the two walks disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
