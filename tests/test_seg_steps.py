"""Pseudo-label and segmentation steps as a user runs them, on the small synthetic dataset."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from sklearn.metrics import confusion_matrix

from pixsup.checkpoints import save_cam_net
from pixsup.data.voc import read_split
from pixsup.data.voc_format import voc_palette
from pixsup.models import create_model
from pixsup.segmentation.prediction import labels_at_size
from pixsup.steps import (
    eval_masks,
    eval_seg,
    make_cams,
    make_ir_labels,
    make_pseudo_masks,
    make_seg_preds,
    make_test_submission,
    train_irn,
    train_seg,
)

from conftest import TINY_PSEUDO, TINY_SEG, write_params


@pytest.fixture(scope="module")
def work(tmp_path_factory, small_voc):
    """Params, a random CAM network and its train_aug CAMs."""
    folder = tmp_path_factory.mktemp("seg_steps")
    raw = {
        "data": {
            "synthetic": {
                "num_train": 12,
                "num_aug_extra": 12,
                "num_val": 8,
                "num_test": 4,
                "min_side": 64,
                "max_side": 80,
            }
        },
        "cam_infer": {"scales": [1.0], "flip": False},
        "pseudo_labels": TINY_PSEUDO,
        "seg_train": TINY_SEG,
        "seg_infer": {"scales": [1.0, 0.5]},
    }
    params = write_params(folder / "params.yaml", raw)
    torch.manual_seed(0)
    cam_model = folder / "cam.pt"
    save_cam_net(cam_model, create_model("tiny", proj_dim=8, pretrained="none"), "tiny", 8, {})
    cams = folder / "cams"
    assert (
        make_cams.main(
            [
                "--params",
                str(params),
                "--root",
                str(small_voc),
                "--split",
                "train_aug",
                "--model",
                str(cam_model),
                "--out",
                str(cams),
                "--quiet",
            ]
        )
        == 0
    )
    return {"folder": folder, "params": params, "cam_model": cam_model, "cams": cams, "root": small_voc}


def test_pseudo_label_steps_end_to_end(work):
    f, root, params = work["folder"], str(work["root"]), str(work["params"])
    ir = f / "ir_labels"
    assert (
        make_ir_labels.main(
            [
                "--params",
                params,
                "--root",
                root,
                "--cams",
                str(work["cams"]),
                "--out",
                str(ir),
                "--workers",
                "2",
                "--quiet",
            ]
        )
        == 0
    )
    ids = read_split(root, "train_aug")
    assert json.loads((ir / "index.json").read_text())["ids"] == ids
    values = np.unique(np.concatenate([np.array(Image.open(ir / f"{i}.png")).ravel() for i in ids]))
    assert set(values) <= set(range(21)) | {255}
    irn = f / "irn.pt"
    assert (
        train_irn.main(
            [
                "--params",
                params,
                "--root",
                root,
                "--labels",
                str(ir),
                "--cam-model",
                str(work["cam_model"]),
                "--out",
                str(irn),
                "--quiet",
            ]
        )
        == 0
    )
    assert (f / "irn.pt.losses.csv").read_text().startswith("epoch,iteration,lr,loss,bg_pos,fg_pos,neg")
    for method in ("irn", "crf", "cam"):
        masks = f / "masks" / method
        assert (
            make_pseudo_masks.main(
                [
                    "--params",
                    params,
                    "--root",
                    root,
                    "--cams",
                    str(work["cams"]),
                    "--method",
                    method,
                    "--irn",
                    str(irn),
                    "--out",
                    str(masks),
                    "--quiet",
                ]
            )
            == 0
        )
        metrics, per_image = f / f"masks_{method}.json", f / f"masks_{method}.per_image.npz"
        assert (
            eval_masks.main(
                ["--root", root, "--split", "train", "--masks", str(masks), "--out", str(metrics)]
                + ["--per-image", str(per_image), "--quiet"]
            )
            == 0
        )
        result = json.loads(metrics.read_text())
        assert 0 < result["miou"] <= 100 and result["images"] == 12
        # Each image's confusion, against scikit-learn's on the two PNGs (255 in the ground truth ignored).
        with np.load(per_image) as stored:
            ids, confusions = list(stored["ids"]), stored["confusion"]
        assert ids == read_split(root, "train") and confusions.shape == (12, 21, 21)
        for image_id, confusion in zip(ids, confusions):
            gt = np.array(Image.open(Path(root) / "SegmentationClass" / f"{image_id}.png")).ravel()
            pred = np.array(Image.open(masks / f"{image_id}.png")).ravel()
            kept = gt != 255
            expected = confusion_matrix(gt[kept], pred[kept], labels=list(range(21)))
            assert np.array_equal(confusion, expected)


def test_segmentation_and_submission_layout(work):
    f, root, params = work["folder"], work["root"], str(work["params"])
    masks = f / "gt_masks"  # ground truth standing in for pseudo masks: only the plumbing is tested here
    shutil.copytree(root / "SegmentationClassAug", masks)
    model = f / "seg.pt"
    assert (
        train_seg.main(["--params", params, "--root", str(root), "--masks", str(masks), "--out", str(model), "--quiet"])
        == 0
    )
    preds = f / "VOC2012" / "Segmentation" / "comp6_test_cls"
    tar = f / "submission.tar"
    assert (
        make_test_submission.main(
            [
                "--params",
                params,
                "--root",
                str(root),
                "--model",
                str(model),
                "--out",
                str(preds),
                "--tar",
                str(tar),
                "--quiet",
            ]
        )
        == 0
    )
    ids = read_split(root, "test")
    assert sorted(p.name for p in preds.glob("*.png")) == sorted(f"{i}.png" for i in ids)
    for image_id in ids:
        with Image.open(preds / f"{image_id}.png") as pred, Image.open(root / "JPEGImages" / f"{image_id}.jpg") as img:
            assert pred.mode == "P" and pred.size == img.size
            assert pred.getpalette()[: 3 * 21] == voc_palette()[: 3 * 21]
            assert np.array(pred).max() <= 20
    with tarfile.open(tar) as archive:
        names = sorted(archive.getnames())
    assert names == sorted(f"results/VOC2012/Segmentation/comp6_test_cls/{i}.png" for i in ids)
    val = f / "val_ss"
    assert (
        make_seg_preds.main(
            [
                "--params",
                params,
                "--root",
                str(root),
                "--split",
                "val",
                "--mode",
                "ss",
                "--model",
                str(model),
                "--out",
                str(val),
                "--quiet",
            ]
        )
        == 0
    )
    assert eval_seg.main(["--root", str(root), "--masks", str(val), "--out", str(f / "seg_val.json"), "--quiet"]) == 0
    assert json.loads((f / "seg_val.json").read_text())["split"] == "val"


def test_bad_inputs_are_named_and_leave_nothing_half_written(work, capsys):
    f, root, params = work["folder"], str(work["root"]), str(work["params"])
    # A CAM file without its high_res key.
    cams = f / "cams_broken"
    shutil.copytree(work["cams"], cams)
    victim = read_split(root, "train_aug")[2]
    with np.load(cams / f"{victim}.npz") as data:
        np.savez(cams / f"{victim}.npz", keys=data["keys"], cam=data["cam"])
    out = f / "masks_broken"
    capsys.readouterr()
    assert (
        make_pseudo_masks.main(
            ["--params", params, "--root", root, "--cams", str(cams), "--method", "cam", "--out", str(out), "--quiet"]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert f"{victim}.npz" in err and "lacks keys ['high_res']" in err and "Traceback" not in err
    assert not (out / "index.json").exists()

    # A CAM file whose maps do not match the image size.
    with np.load(work["cams"] / f"{victim}.npz") as data:
        np.savez(cams / f"{victim}.npz", keys=data["keys"], cam=data["cam"], high_res=data["high_res"][:, :5])
    assert (
        make_ir_labels.main(
            ["--params", params, "--root", root, "--cams", str(cams), "--out", str(f / "ir_broken"), "--quiet"]
        )
        == 1
    )
    assert f"{victim}.npz" in capsys.readouterr().err

    # A pseudo-mask folder that lacks some ids.
    partial = f / "masks_partial"
    shutil.copytree(work["root"] / "SegmentationClassAug", partial)
    (partial / f"{victim}.png").unlink()
    model = f / "never.pt"
    assert (
        train_seg.main(["--params", params, "--root", root, "--masks", str(partial), "--out", str(model), "--quiet"])
        == 1
    )
    err = capsys.readouterr().err
    assert str(partial) in err and victim in err
    assert not model.exists() and not (f / "never.pt.resume.pt").exists()

    # A corrupt checkpoint.
    corrupt = f / "corrupt.pt"
    corrupt.write_bytes(b"PK\x03\x04 not a checkpoint")
    preds = f / "preds_never"
    assert (
        make_seg_preds.main(
            [
                "--params",
                params,
                "--root",
                root,
                "--split",
                "val",
                "--model",
                str(corrupt),
                "--out",
                str(preds),
                "--quiet",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert str(corrupt) in err and "Traceback" not in err
    assert not (preds / "index.json").exists()


def test_segmentation_training_resumes_to_the_same_weights(work, monkeypatch):
    from pixsup import engine
    from pixsup.checkpoints import read_trained, resume_path
    from pixsup.config import SegTrainConfig
    from pixsup.segmentation.training import FORMAT, train_seg

    f, root = work["folder"], work["root"]
    masks = root / "SegmentationClassAug"
    cfg = SegTrainConfig(**{**TINY_SEG, "epochs": 2})
    whole = f / "resume" / "whole.pt"
    train_seg(cfg, root, "train_aug", masks, whole, progress=False)

    interrupted = f / "resume" / "interrupted.pt"
    real_write = engine.write_text

    def crash_after_first_epoch(path, text):
        real_write(path, text)
        raise KeyboardInterrupt("killed after epoch 1")

    monkeypatch.setattr(engine, "write_text", crash_after_first_epoch)
    with pytest.raises(KeyboardInterrupt):
        train_seg(cfg, root, "train_aug", masks, interrupted, progress=False)
    monkeypatch.undo()
    assert resume_path(interrupted).exists() and not interrupted.exists()
    train_seg(cfg, root, "train_aug", masks, interrupted, progress=False)
    first = read_trained(whole, FORMAT)["model"]
    second = read_trained(interrupted, FORMAT)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not resume_path(interrupted).exists()


def test_boundary_training_stops_after_an_epoch_and_resumes_to_the_same_weights(work):
    from pixsup.checkpoints import read_trained, resume_path
    from pixsup.pseudo_labels.boundary import FORMAT

    f, root, params = work["folder"], str(work["root"]), work["folder"] / "irn_params.yaml"
    write_params(params, {"pseudo_labels": {"irn": {**TINY_PSEUDO["irn"], "epochs": 2}}})
    labels = str(work["root"] / "SegmentationClassAug")  # ground truth standing in for confident labels
    common = [
        "--params",
        str(params),
        "--root",
        root,
        "--labels",
        labels,
        "--cam-model",
        str(work["cam_model"]),
        "--quiet",
    ]
    whole, stopped = f / "irn_resume" / "whole.pt", f / "irn_resume" / "stopped.pt"
    assert train_irn.main([*common, "--out", str(whole)]) == 0
    assert train_irn.main([*common, "--out", str(stopped), "--stop-after-epoch", "1"]) == 0
    assert resume_path(stopped).exists() and not stopped.exists()
    assert not stopped.with_name("stopped.pt.meta.json").exists()
    assert train_irn.main([*common, "--out", str(stopped)]) == 0
    first, second = read_trained(whole, FORMAT)["model"], read_trained(stopped, FORMAT)["model"]
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not resume_path(stopped).exists() and stopped.with_name("stopped.pt.meta.json").is_file()
    rows = stopped.with_name("stopped.pt.losses.csv").read_text().splitlines()
    assert rows == whole.with_name("whole.pt.losses.csv").read_text().splitlines()
    assert rows[0] == "epoch,iteration,lr,loss,bg_pos,fg_pos,neg"
    assert [int(row.split(",")[1]) for row in rows[1:]] == list(range(1, len(rows)))


def test_crf_refines_prediction_probabilities_along_colour_edges():
    from pixsup.config import CrfConfig
    from pixsup.crf import crf_from_probabilities

    image = np.zeros((20, 24, 3), np.uint8)
    image[:, 12:] = 255
    probs = np.full((2, 20, 24), 0.5, np.float32)
    probs[0, :, :10], probs[1, :, :10] = 0.9, 0.1
    probs[0, :, 14:], probs[1, :, 14:] = 0.1, 0.9
    refined = crf_from_probabilities(image, probs, CrfConfig())
    assert refined.shape == probs.shape
    labels = refined.argmax(0)
    # The undecided band between the two halves follows the colour edge at column 12.
    assert (labels[:, :12] == 0).all() and (labels[:, 12:] == 1).all()


def test_a_killed_mask_run_leaves_a_folder_no_step_reads(work, monkeypatch, capsys):
    from pixsup.steps import make_pseudo_masks as step

    f, root, params = work["folder"], str(work["root"]), str(work["params"])
    out = f / "masks_killed"
    argv = ["--params", params, "--root", root, "--cams", str(work["cams"]), "--method", "cam", "--out", str(out)]
    assert make_pseudo_masks.main([*argv, "--quiet"]) == 0  # a finished folder first
    real_write, written = step.write_label_png, []

    def killed_after_two(path, labels):
        if len(written) == 2:
            raise KeyboardInterrupt("killed")
        written.append(path)
        real_write(path, labels)

    monkeypatch.setattr(step, "write_label_png", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        make_pseudo_masks.main([*argv, "--quiet"])
    monkeypatch.undo()
    capsys.readouterr()
    metrics = f / "killed.json"
    assert eval_masks.main(["--root", root, "--masks", str(out), "--out", str(metrics), "--quiet"]) == 1
    assert f"error: {out}: unfinished (a run stopped while writing it)" in capsys.readouterr().err
    assert train_seg.main(["--params", params, "--root", root, "--masks", str(out), "--out", str(f / "k.pt")]) == 1
    assert not metrics.exists() and not (f / "k.pt").exists()
    # Run to the end, the folder is read again.
    assert make_pseudo_masks.main([*argv, "--quiet"]) == 0
    assert eval_masks.main(["--root", root, "--masks", str(out), "--out", str(metrics), "--quiet"]) == 0


def test_without_a_test_split_the_submission_is_skipped_and_says_why(work, tmp_path):
    root = tmp_path / "VOC2012"
    shutil.copytree(work["root"], root)
    (root / "ImageSets" / "Segmentation" / "test.txt").unlink()  # as in the VOC 2012 trainval tar
    preds, tar = tmp_path / "comp6_test_cls", tmp_path / "submission.tar"
    never = tmp_path / "no_model.pt"  # not needed when there is nothing to predict
    assert make_test_submission.main(
        ["--params", str(work["params"]), "--root", str(root), "--model", str(never), "--out", str(preds)]
        + ["--tar", str(tar), "--quiet"]
    ) == 0  # fmt: skip
    manifest = json.loads((preds / "index.json").read_text())
    assert manifest["ids"] == [] and "no ImageSets/Segmentation/test.txt" in manifest["skipped"]
    with tarfile.open(tar) as archive:
        assert archive.getnames() == []


def test_labels_at_size_equals_torch_interpolating_the_whole_map():
    """Enlarging a band of rows at a time gives torch's whole-map bilinear enlargement, then argmax."""
    probs = torch.rand(21, 37, 53, generator=torch.Generator().manual_seed(0)).softmax(0)
    size = (301, 410)
    whole = F.interpolate(probs[None], size=size, mode="bilinear", align_corners=False)[0]
    expected = whole.argmax(0).numpy()
    labels = labels_at_size(probs.numpy(), size, band_rows=7)
    assert labels.shape == size and labels.dtype == np.uint8
    top2 = whole.topk(2, dim=0).values
    near_ties = (top2[0] - top2[1] < 1e-5).numpy()
    assert not ((labels != expected) & ~near_ties).any()
    assert (labels == expected).mean() > 0.9999
    assert (labels_at_size(probs.numpy(), (37, 53)) == probs.argmax(0).numpy()).all()


def _agreement(a: Path, b: Path) -> float:
    total = same = 0
    for png in sorted(a.glob("*.png")):
        left, right = np.array(Image.open(png)), np.array(Image.open(b / png.name))
        assert left.shape == right.shape
        total += left.size
        same += int((left == right).sum())
    return same / total


def test_above_max_side_masks_and_predictions_are_made_shrunk_and_given_at_image_size(work, tmp_path):
    """max_side below the images' size: masks (crf, irn) and predictions at image size, close to full-size ones."""
    f, root = work["folder"], str(work["root"])
    raw = yaml.safe_load(work["params"].read_text())
    irn = f / "irn_small.pt"
    ir = f / "ir_labels_small"
    base = ["--root", root, "--quiet"]
    assert (
        make_ir_labels.main([*base, "--params", str(work["params"]), "--cams", str(work["cams"]), "--out", str(ir)])
        == 0
    )
    irn_args = ["--labels", str(ir), "--cam-model", str(work["cam_model"]), "--out", str(irn)]
    assert train_irn.main([*base, "--params", str(work["params"]), *irn_args]) == 0
    for max_side in (1000, 40):
        raw["pseudo_labels"]["max_side"] = max_side
        params = write_params(tmp_path / f"params_{max_side}.yaml", raw)
        for method in ("crf", "irn"):
            args = ["--params", str(params), "--cams", str(work["cams"]), "--method", method, "--irn", str(irn)]
            assert make_pseudo_masks.main([*base, *args, "--out", str(tmp_path / f"{method}_{max_side}")]) == 0
    for method in ("crf", "irn"):
        agreement = _agreement(tmp_path / f"{method}_1000", tmp_path / f"{method}_40")
        print(f"\n{method} masks made at long side 40 against full size (64-80 px): {agreement:.3f} of pixels agree")
        assert agreement > 0.8
    model = f / "seg_small.pt"
    seg_args = ["--params", str(work["params"]), "--masks", str(tmp_path / "crf_1000"), "--out", str(model)]
    assert train_seg.main([*base, *seg_args]) == 0
    for max_side in (1000, 60):
        raw["seg_infer"]["max_side"] = max_side
        params = write_params(tmp_path / f"params_{max_side}.yaml", raw)
        args = ["--params", str(params), "--split", "val", "--mode", "ms", "--model", str(model)]
        assert make_seg_preds.main([*base, *args, "--out", str(tmp_path / f"val_{max_side}")]) == 0
    agreement = _agreement(tmp_path / "val_1000", tmp_path / "val_60")
    print(f"predictions made at long side 60 against full size: {agreement:.3f} of pixels agree")
    assert agreement > 0.8
