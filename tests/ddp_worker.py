"""One rank of tests/test_ddp.py's two-process run, started by ``python -m pixsup.runtime.launch --nproc 2``.

Trains through the step commands into ``<folder>/ddp`` and reports what this rank
saw in ``<folder>/reports/rank<r>.json``: the exit codes, every file it wrote,
whether the resume checkpoint was there after a stop, and what the
cross-rank weight check said about weights that differ.
"""

from __future__ import annotations

import contextlib
import json
import sys
from pathlib import Path

import torch

from pixsup import files
from pixsup.checkpoints import resume_path
from pixsup.runtime.distributed import process_group
from pixsup.runtime.launch_env import launch_rank
from pixsup.steps import train_cam, train_irn, train_seg

folder, root = Path(sys.argv[1]), sys.argv[2]
out = folder / "ddp"
written: list[str] = []
_real_atomic_path = files.atomic_path


@contextlib.contextmanager
def _recording_atomic_path(path):
    # Every output of the pipeline goes through files.atomic_path.
    written.append(str(Path(path).relative_to(folder)))
    with _real_atomic_path(path) as tmp:
        yield tmp


files.atomic_path = _recording_atomic_path


def cam(name: str, *args: str, params: str = "params.yaml") -> int:
    return train_cam.main(
        [
            "--params",
            str(folder / params),
            "--root",
            root,
            "--split",
            "train_aug",
            "--out",
            str(out / name),
            "--quiet",
            *args,
        ]
    )


def seg(name: str, *args: str) -> int:
    return train_seg.main(
        [
            "--params",
            str(folder / "params.yaml"),
            "--root",
            root,
            "--split",
            "train_aug",
            "--masks",
            f"{root}/SegmentationClassAug",
            "--out",
            str(out / name),
            "--quiet",
            *args,
        ]
    )


def irn(name: str, *args: str) -> int:
    return train_irn.main(
        [
            "--params",
            str(folder / "params.yaml"),
            "--root",
            root,
            "--split",
            "train_aug",
            "--labels",
            f"{root}/SegmentationClassAug",
            "--cam-model",
            str(folder / "single" / "support.pt"),
            "--out",
            str(out / name),
            "--quiet",
            *args,
        ]
    )


support = ["--support", str(folder / "single" / "support.pt")]
codes = {
    "full": cam("full.pt", "--variant", "full", *support, "--log", str(out / "full.log")),
    "baseline": cam("baseline.pt", "--variant", "support"),
    "ema": cam("ema.pt", "--variant", "full", params="params_ema.yaml"),
    "seg": seg("seg.pt"),
    "irn": irn("irn.pt"),
    "cam_stop": cam("resumed.pt", "--variant", "full", *support, "--stop-after-epoch", "1"),
}
stopped_state = {"cam": resume_path(out / "resumed.pt").exists() and not (out / "resumed.pt").exists()}
codes["cam_rest"] = cam("resumed.pt", "--variant", "full", *support)
codes["seg_stop"] = seg("seg_resumed.pt", "--stop-after-epoch", "1")
stopped_state["seg"] = resume_path(out / "seg_resumed.pt").exists() and not (out / "seg_resumed.pt").exists()
codes["seg_rest"] = seg("seg_resumed.pt")
codes["irn_stop"] = irn("irn_resumed.pt", "--stop-after-epoch", "1")
stopped_state["irn"] = resume_path(out / "irn_resumed.pt").exists() and not (out / "irn_resumed.pt").exists()
codes["irn_rest"] = irn("irn_resumed.pt")

with process_group(torch.device("cpu")) as ranks:
    differing = torch.nn.Linear(2, 2)
    torch.nn.init.constant_(differing.weight, float(ranks.rank))
    try:
        ranks.check_identical(differing, "the probe layer")
        check_message = None
    except RuntimeError as exc:
        check_message = str(exc)

rank = launch_rank()
(folder / "reports").mkdir(exist_ok=True)
(folder / "reports" / f"rank{rank}.json").write_text(
    json.dumps(
        {
            "codes": codes,
            "written": written,
            "stopped_with_resume_checkpoint": stopped_state,
            "check_message": check_message,
        }
    )
)
