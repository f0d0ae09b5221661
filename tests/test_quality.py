"""The method's claim, measured: on the synthetic default, the full method's CAM seeds beat the
baseline's at the same seed and training budget.

Both MainNet and the same-budget baseline start from the same trained
SupportNet and train for ``epochs`` more, so the only difference is the RCM and
MAM terms. Runs the shipped params.yaml unchanged (a few minutes on 2 cores).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pixsup.cams import dump_cams
from pixsup.checkpoints import load_cam_net
from pixsup.config import load_params
from pixsup.data.datasets import CamInferDataset
from pixsup.data.synthetic import generate_synthetic
from pixsup.evaluate import evaluate_cams
from pixsup.metrics import sweep_thresholds
from pixsup.train import train_cam

REPO = Path(__file__).resolve().parents[1]

# docs/design-study.md: with params.yaml's seed 0 the full method led the
# same-budget baseline by 3.3 points on train (36.8 vs 33.5). Over seeds 0-2 the
# gap was 3.3, 1.3 and 2.5 (the baseline alone moved between 31.7 and 34.7), so
# a change of seed, thread count or CPU kernels can move it by about 2 points.
# The assertion keeps the measured gain net of that allowance.
MEASURED_GAIN = 3.3
NOISE = 2.0


@pytest.mark.slow
def test_full_method_beats_same_budget_baseline(tmp_path, capsys):
    params = load_params(REPO / "params.yaml")
    cfg = params.cam_train
    root = tmp_path / "VOC2012"
    generate_synthetic(root, params.data.synthetic, progress=False)
    support = tmp_path / "support.pt"
    train_cam(cfg, root, "train_aug", "baseline", support, progress=False)

    def seed_miou(variant: str) -> float:
        model_path = tmp_path / f"{variant}.pt"
        train_cam(cfg, root, "train_aug", variant, model_path, support_ckpt=support, progress=False)
        model, _ = load_cam_net(model_path)
        model.eval()
        cams = tmp_path / "cams" / variant
        dump_cams(model, CamInferDataset(root, "train"), params.cam_infer, cams, progress=False)
        e = params.cam_eval
        result = evaluate_cams(cams, root, "train", sweep_thresholds(e.threshold_min, e.threshold_max,
                                                                      e.threshold_step), progress=False)
        return result["miou"]

    baseline, full = seed_miou("baseline"), seed_miou("full")
    with capsys.disabled():  # the measured numbers belong in every test log
        print(f"\nseed mIoU on train: same-budget baseline {baseline:.2f}, full {full:.2f}, "
              f"gain {full - baseline:+.2f} (asserted >= {MEASURED_GAIN - NOISE:.1f})")
    assert full - baseline >= MEASURED_GAIN - NOISE
