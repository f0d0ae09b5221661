"""The pipeline's claims, measured on the synthetic default (the shipped params.yaml, unchanged):

1. the tiny backbone's pretraining learns the source textures (the features every CAM network starts from);
2. the full method's CAM seeds keep their measured margin over the baseline's at the same seed and
   training budget (both MainNet and the same-budget baseline start from the same trained SupportNet and
   train for ``epochs`` more, so the only difference is the RCM and MAM terms), net of the seed-to-seed
   spread; on the pretrained default that margin is small (docs/design-study.md, section 5);
3. IRN's pseudo masks of those CAMs, with thresholds following their seed curve, beat their seeds, and the
   segmentation network trained on the masks reaches the val mIoU measured when the defaults were set.

About 10 minutes on 2 cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pixsup.cam.cam_files import load_image_and_cams
from pixsup.cam.inference import dump_cams
from pixsup.cam.training import train_cam
from pixsup.checkpoints import load_cam_net
from pixsup.config import load_params
from pixsup.data.datasets import CamInferDataset
from pixsup.data.label_folders import write_label_png
from pixsup.data.synthetic import generate_synthetic
from pixsup.data.voc import VocIndex, read_split
from pixsup.evaluation.metrics import sweep_thresholds
from pixsup.evaluation.scoring import evaluate_cams, evaluate_label_folder
from pixsup.files import write_json
from pixsup.pretraining import pretrain_backbone
from pixsup.pseudo_labels.boundary import load_boundary_net, predict_boundary, train_irn
from pixsup.pseudo_labels.calibration import calibrate
from pixsup.pseudo_labels.refine import confident_labels, irn_mask
from pixsup.segmentation.prediction import predict_probs
from pixsup.segmentation.training import load_segnet, train_seg

REPO = Path(__file__).resolve().parents[1]

# The README's numbers: what `snakemake --cores all` wrote for the shipped params.yaml on an AVX-512 EPYC
# (docs/default-run-summary.json; tests/test_workflow_files.py keeps the README equal to it). This chain
# gives them exactly on that machine kind with two threads. Measured on it for the previous default with
# `python -m benchmarks.reproducibility`, oneDNN limited to AVX2 and one thread instead of two moved
# them by up to 0.37 (seeds), 0.63 (irn masks) and 0.65 (segmentation); an AVX2 and an AVX-512 EPYC
# differed by up to 0.6 and 1.5 before the IRN-fidelity changes. The tolerances cover both; a change of
# code that moves the numbers further must rerun the default and update the README.
DEFAULT_RUN = json.loads((REPO / "docs" / "default-run-summary.json").read_text())
SEED_SPREAD = 1.0
MASK_SPREAD = 1.5
SEG_SPREAD = 2.0

# With params.yaml's seed 0 the full method leads the same-budget baseline by 0.59 points on train. Over
# seeds 0-2 the lead was +0.59, -0.82 and -1.62 on train and +1.18, +2.00 and -1.98 on val
# (docs/design-study.md, section 5), so a change of seed moves it by up to 2.2 points: the assertion keeps the
# measured gain net of a 2.25-point allowance, below every train lead seen. It does not say that the method
# wins: on this default it does not measurably (the README's intervals include 0).
MEASURED_GAIN = DEFAULT_RUN["seed_miou"]["full"] - DEFAULT_RUN["seed_miou"]["baseline_same_budget"]
NOISE = 2.25


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The synthetic default's dataset, SupportNet, and the full and same-budget baseline MainNets."""
    folder = tmp_path_factory.mktemp("quality")
    params = load_params(REPO / "params.yaml")
    root = folder / "VOC2012"
    generate_synthetic(root, params.data.synthetic, progress=False)
    # What `cam_train.pretrained: auto` loads for tiny in the workflow, made here (the test runs elsewhere).
    pretrained = folder / "tiny_parts.pth"
    pretraining = pretrain_backbone(params.pretrain, pretrained, progress=False)
    cam_train = params.cam_train.model_copy(update={"pretrained": str(pretrained)})
    support = folder / "support.pt"
    train_cam(cam_train, root, "train_aug", "support", support, progress=False)
    models = {}
    for variant in ("baseline_same_budget", "full"):
        models[variant] = folder / f"{variant}.pt"
        train_cam(cam_train, root, "train_aug", variant, models[variant], support_ckpt=support, progress=False)
    return {"folder": folder, "params": params, "root": root, "models": models, "pretraining": pretraining}


# The pretrained backbone reached 69.8 % top-1 on the held-out source images (chance 4.2 %;
# docs/synthetic-data.md); the floor allows for another CPU's arithmetic.
SOURCE_ACCURACY_FLOOR = 60.0


@pytest.mark.slow
def test_pretrained_backbone_learned_the_source_textures(trained, capsys):
    summary = trained["pretraining"]
    with capsys.disabled():
        print(
            f"\nsource held-out accuracy {summary['held_out_accuracy']:.1f} % "
            f"(chance {summary['chance_accuracy']:.1f} %; asserted >= {SOURCE_ACCURACY_FLOOR})"
        )
    assert summary["held_out_accuracy"] >= SOURCE_ACCURACY_FLOOR


def _cams(trained, variant: str, split: str) -> Path:
    cams = trained["folder"] / "cams" / variant / split
    if not (cams / "index.json").exists():
        model, _ = load_cam_net(trained["models"][variant])
        dataset = CamInferDataset(trained["root"], split)
        dump_cams(model.eval(), dataset, trained["params"].cam_infer, cams, progress=False)
        write_json(cams / "index.json", {"ids": dataset.ids, "split": split})
    return cams


def _seeds(trained, variant: str) -> dict:
    """eval_cams' metrics of the variant's seeds on train (also written where a calibration reads them)."""
    e = trained["params"].cam_eval
    metrics = evaluate_cams(
        _cams(trained, variant, "train"),
        trained["root"],
        "train",
        sweep_thresholds(e.threshold_min, e.threshold_max, e.threshold_step),
        progress=False,
    )
    write_json(trained["folder"] / f"seeds_train_{variant}.json", metrics)
    return metrics


def _seed_miou(trained, variant: str) -> float:
    return _seeds(trained, variant)["miou"]


@pytest.mark.slow
def test_full_method_beats_same_budget_baseline(trained, capsys):
    baseline, full = _seed_miou(trained, "baseline_same_budget"), _seed_miou(trained, "full")
    with capsys.disabled():  # the measured numbers belong in every test log
        print(
            f"\nseed mIoU on train: same-budget baseline {baseline:.2f}, full {full:.2f}, "
            f"gain {full - baseline:+.2f} (asserted >= {MEASURED_GAIN - NOISE:.1f})"
        )
    assert full - baseline >= MEASURED_GAIN - NOISE
    assert abs(baseline - DEFAULT_RUN["seed_miou"]["baseline_same_budget"]) <= SEED_SPREAD
    assert abs(full - DEFAULT_RUN["seed_miou"]["full"]) <= SEED_SPREAD


# The segmentation network trained on the irn masks must reach the default run's val mIoU net of
# SEG_NOISE, twice the spread of the seed numbers over seeds 0-2 (docs/pseudo-labels.md).
SEG_NOISE = 4.0


@pytest.mark.slow
def test_irn_masks_beat_seeds_and_segmentation_learns_from_them(trained, capsys):
    params, root, folder = trained["params"], trained["root"], trained["folder"]
    seed = _seeds(trained, "full")["miou"]
    # The thresholds as make_ir_labels and make_pseudo_masks take them (calibrated when params.yaml says so).
    cfg, _ = calibrate(
        params.pseudo_labels,
        folder / "seeds_train_full.json",
        ("conf_fg_threshold", "conf_bg_threshold", "bg_threshold"),
    )
    cams = _cams(trained, "full", "train_aug")
    ids = read_split(root, "train_aug")
    ir_labels, masks = folder / "ir_labels", folder / "masks"
    for image_id in ids:
        image, arrays = load_image_and_cams(root, cams, image_id)
        write_label_png(ir_labels / f"{image_id}.png", confident_labels(image, arrays, cfg))
    irn = folder / "irn.pt"
    train_irn(cfg.irn, root, "train_aug", ir_labels, irn, cam_checkpoint=trained["models"]["full"], progress=False)
    boundary_net = load_boundary_net(irn)
    for image_id in ids:
        image, arrays = load_image_and_cams(root, cams, image_id)
        boundary = predict_boundary(boundary_net, image, torch.device("cpu"))
        write_label_png(masks / f"{image_id}.png", irn_mask(image, arrays, boundary, cfg))
    mask = evaluate_label_folder(masks, root, "train", progress=False)["miou"]

    seg = folder / "seg.pt"
    train_seg(params.seg_train, root, "train_aug", masks, seg, cam_checkpoint=trained["models"]["full"], progress=False)
    model = load_segnet(seg)
    preds = folder / "preds"
    for image_id in read_split(root, "val"):
        probs = predict_probs(model, VocIndex(root).load_image(image_id), (1.0,), False, torch.device("cpu"))
        write_label_png(preds / f"{image_id}.png", probs.argmax(0).astype("uint8"))
    val = evaluate_label_folder(preds, root, "val", progress=False)["miou"]
    floor = DEFAULT_RUN["val_miou"]["ss"] - SEG_NOISE
    with capsys.disabled():
        print(
            f"\nfull: seed mIoU {seed:.2f} (best threshold), irn mask mIoU {mask:.2f} on train; "
            f"segmentation val mIoU {val:.2f} (single scale; asserted >= {floor:.1f})"
        )
    assert mask > seed
    assert val >= floor
    assert abs(mask - DEFAULT_RUN["mask_miou"]["full/irn"]) <= MASK_SPREAD
    assert abs(val - DEFAULT_RUN["val_miou"]["ss"]) <= SEG_SPREAD
