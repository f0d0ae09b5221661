"""The random walk on a VOC-sized image (500x375: a 94x125 stride-4 grid) against IRN's dense matrix.

Both walk the same random boundary map and CAMs (radius 5, beta 10, 2^8
steps), each in a fresh process so that its peak resident memory is its own;
they must agree (values and labels) before their times and memories count.
"""

from __future__ import annotations

import torch

from .context import Options
from .measure import CheckFailed, Record, Target, check_close, in_fresh_process

STAGE = "random_walk"
RELATIVE_TOLERANCE = 1e-3
SAME_LABEL_SHARE = 0.999  # float32 sums in another order may flip a near-tie


def walk_job(kind: str, height: int, width: int, classes: int):
    """The walk of ``kind`` (ours | dense) on seeded random inputs, ready to call (run by ``in_fresh_process``)."""
    from pixsup.pseudo_labels.random_walk import dense_random_walk, random_walk

    generator = torch.Generator().manual_seed(0)
    boundary = torch.rand(height, width, generator=generator) ** 4
    x = torch.rand(classes, height, width, generator=generator) * (1 - boundary)
    walk = random_walk if kind == "ours" else dense_random_walk
    return lambda: walk(x, boundary, radius=5, beta=10.0, exp_times=8)


def run(options: Options) -> list[Record]:
    height, width = (30, 40) if options.quick else (94, 125)
    results, seconds, peak_mb = {}, {}, {}
    for kind in ("ours", "dense"):
        results[kind], seconds[kind], peak_mb[kind] = in_fresh_process(
            "benchmarks.random_walk:walk_job", kind=kind, height=height, width=width, classes=3
        )
    scale = results["dense"].abs().max().item()
    check = check_close(
        "walked scores / their maximum", results["ours"] / scale, results["dense"] / scale, RELATIVE_TOLERANCE
    )
    same = (results["ours"].argmax(0) == results["dense"].argmax(0)).double().mean().item()
    if same < SAME_LABEL_SHARE:
        raise CheckFailed(f"labels agree on {same:.2%} of the cells, fewer than {SAME_LABEL_SHARE:.1%}")
    check += f"; same label on {same:.2%} of {height * width} cells"
    size = f"{height}x{width} grid, 3 classes"
    return [
        Record(
            STAGE,
            "peak memory MB vs the dense matrix",
            peak_mb["ours"],
            peak_mb["dense"],
            Target("<=", 0.1),
            check,
            size,
        ),
        Record(STAGE, "seconds vs the dense matrix", seconds["ours"], seconds["dense"], Target("<=", 1.0), check),
    ]
