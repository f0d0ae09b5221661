"""The steps as a user runs them: python -m pixsup.steps.<step>, end to end on small synthetic data."""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess

import numpy as np
import pytest
from PIL import Image

from pixsup.steps import eval_cams, gather_cams, make_cams, prepare_data, train_cam, validate_data

from conftest import write_params
from workflow_repo import REPO

# One step module per workflow rule, named as the rule (test_workflow_files checks the rules' commands).
RULES = sorted(
    set(re.findall(r"^rule (\w+):", "".join(p.read_text() for p in (REPO / "workflow" / "rules").glob("*.smk")), re.M))
)


@pytest.mark.parametrize("step", RULES)
def test_help_explains_inputs_and_outputs(step, capsys):
    module = importlib.import_module(f"pixsup.steps.{step}")
    with pytest.raises(SystemExit) as exit_:
        module.main(["--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: python -m pixsup.steps.{step} ")
    assert "Inputs:" in out and "Example:" in out and len(out) > 400


def test_pipeline_of_steps(tmp_path, small_raw):
    params = write_params(tmp_path / "params.yaml", small_raw)
    root = tmp_path / "VOC2012"
    assert (
        prepare_data.main(
            ["--params", str(params), "--root", str(root), "--out", str(tmp_path / "prepared.json"), "--quiet"]
        )
        == 0
    )
    assert validate_data.main(["--root", str(root), "--split", "train", "--require-mask"]) == 0
    support = tmp_path / "support" / "model.pt"
    full = tmp_path / "full" / "model.pt"
    assert (
        train_cam.main(
            ["--params", str(params), "--root", str(root), "--variant", "support", "--out", str(support), "--quiet"]
        )
        == 0
    )
    assert (
        train_cam.main(
            [
                "--params",
                str(params),
                "--root",
                str(root),
                "--variant",
                "full",
                "--support",
                str(support),
                "--out",
                str(full),
                "--quiet",
            ]
        )
        == 0
    )
    meta = json.loads((tmp_path / "full" / "model.pt.meta.json").read_text())
    assert meta["params"]["cam_train"]["backbone"] == "tiny" and meta["variant"] == "full"
    assert meta["seed"] == 0 and meta["seconds"] > 0 and meta["versions"]["torch"]

    cams = tmp_path / "full" / "cams" / "train"
    for shard in ("0/2", "1/2"):
        assert (
            make_cams.main(
                [
                    "--params",
                    str(params),
                    "--root",
                    str(root),
                    "--split",
                    "train",
                    "--model",
                    str(full),
                    "--out",
                    str(cams),
                    "--shard",
                    shard,
                    "--quiet",
                ]
            )
            == 0
        )
    assert not (cams / "index.json").exists()
    metrics = tmp_path / "full" / "metrics.json"
    # Without the gathered manifest evaluation refuses to start.
    per_image = tmp_path / "full" / "per_image.npz"
    evaluate = ["--params", str(params), "--cams", str(cams), "--root", str(root), "--out", str(metrics)]
    assert eval_cams.main([*evaluate, "--per-image", str(per_image), "--quiet"]) == 1
    assert gather_cams.main(["--out", str(cams), "--shards", "2", "--quiet"]) == 0
    manifest = json.loads((cams / "index.json").read_text())
    ids = (root / "ImageSets" / "Segmentation" / "train.txt").read_text().split()
    assert sorted(manifest["ids"]) == sorted(ids)
    with np.load(cams / f"{ids[0]}.npz") as data:
        assert set(data.files) == {"keys", "cam", "high_res"}
    assert eval_cams.main([*evaluate, "--per-image", str(per_image), "--quiet"]) == 0
    result = json.loads(metrics.read_text())
    assert 0 < result["miou"] <= 100 and result["images"] == len(ids)
    assert len(result["curve"]) == 56 and 0.05 <= result["best_threshold"] <= 0.6
    assert max(point["miou"] for point in result["curve"]) == result["miou"]
    assert (tmp_path / "full" / "metrics.json.meta.json").is_file()
    # Per-image confusions at the best threshold, rebuilt here pixel by pixel from the seed's
    # definition: the strongest class where its CAM exceeds the threshold, else background.
    with np.load(per_image) as stored:
        assert stored["ids"].tolist() == ids and float(stored["threshold"]) == result["best_threshold"]
        confusions = stored["confusion"]
    t = np.float32(result["best_threshold"])
    for i, image_id in enumerate(ids):
        gt = np.array(Image.open(root / "SegmentationClass" / f"{image_id}.png"))
        with np.load(cams / f"{image_id}.npz") as cam:
            high_res, keys = cam["high_res"].astype(np.float32), cam["keys"]
        seed = np.where(high_res.max(0) > t, keys[high_res.argmax(0)], 0) if len(keys) else np.zeros_like(gt)
        keep = gt != 255
        expected = np.zeros((21, 21), np.int64)
        np.add.at(expected, (gt[keep], seed[keep]), 1)
        np.testing.assert_array_equal(confusions[i], expected, err_msg=image_id)
    # Their sum scores the reported mIoU (IoU = TP / (TP + FP + FN), classes with an empty union left out).
    total = confusions.sum(0).astype(float)
    tp, union = np.diag(total), total.sum(0) + total.sum(1) - np.diag(total)
    assert np.mean(tp[union > 0] / union[union > 0]) * 100 == pytest.approx(result["miou"], abs=1e-3)


def test_unknown_config_key_names_the_key(tmp_path, small_raw, capsys):
    small_raw["cam_train"]["rcm"] = {"tua": 0.1}
    params = write_params(tmp_path / "params.yaml", small_raw)
    code = train_cam.main(
        ["--params", str(params), "--root", str(tmp_path), "--variant", "support", "--out", str(tmp_path / "m.pt")]
    )
    assert code == 2
    assert "unknown key 'cam_train.rcm.tua'" in capsys.readouterr().err


def test_training_on_broken_data_names_the_file(tmp_path, small_raw, small_voc, capsys):
    import shutil

    root = tmp_path / "VOC2012"
    shutil.copytree(small_voc, root)
    victim = (root / "ImageSets" / "Segmentation" / "train_aug.txt").read_text().split()[3]
    (root / "JPEGImages" / f"{victim}.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    params = write_params(tmp_path / "params.yaml", small_raw)
    code = train_cam.main(
        [
            "--params",
            str(params),
            "--root",
            str(root),
            "--variant",
            "support",
            "--out",
            str(tmp_path / "m.pt"),
            "--quiet",
        ]
    )
    assert code == 1
    err = capsys.readouterr().err
    assert f"{victim}.jpg" in err
    assert not (tmp_path / "m.pt").exists()


@pytest.fixture
def full_disk(tmp_path):
    """A 64 KiB file system (tmpfs, mounted as root) that a model file cannot fit on."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    folder = tmp_path / "full"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_ends_a_step_with_one_line_naming_the_file(small_voc, small_raw, tmp_path, full_disk, capsys):
    raw = {**small_raw, "cam_train": {**small_raw["cam_train"], "epochs": 1}}
    params = write_params(tmp_path / "params.yaml", raw)
    out = full_disk / "model.pt"
    code = train_cam.main(
        ["--params", str(params), "--root", str(small_voc), "--variant", "support", "--out", str(out), "--quiet"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert f"error: no space left on the device writing {out}.resume.pt" in err and "Traceback" not in err
    assert list(full_disk.iterdir()) == []


@pytest.mark.parametrize(
    "change, args, code, message",
    [
        ({"backbone": "resnet5"}, [], 2, "cam_train.backbone: unknown backbone 'resnet5'; registered: resnet101, "),
        ({"batch_size": 25}, [], 2, "cam_train.batch_size 25 is more than the 24 images of split 'train_aug'"),
        ({}, ["--variant", "full"], 1, "variant 'full' with support.kind: frozen needs the trained SupportNet"),
        ({}, ["--support", "m.pt"], 1, "variant 'support' is the SupportNet itself and trains without --support"),
    ],
)
def test_what_a_step_refuses_is_one_line(small_voc, small_raw, tmp_path, capsys, change, args, code, message):
    small_raw["cam_train"].update(change)
    params = write_params(tmp_path / "params.yaml", small_raw)
    argv = ["--params", str(params), "--root", str(small_voc), "--variant", "support", "--out", str(tmp_path / "m.pt")]
    assert train_cam.main([*argv, "--quiet", *args]) == code
    err = capsys.readouterr().err
    assert any(line.startswith("error: ") and message in line for line in err.splitlines()), err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_killed_make_cams_never_leaves_a_folder_that_looks_complete(tmp_path, small_raw, small_voc, monkeypatch):
    from pixsup.cam import inference

    params = write_params(tmp_path / "params.yaml", {**small_raw, "cam_train": {**small_raw["cam_train"], "epochs": 1}})
    model, cams = tmp_path / "model.pt", tmp_path / "cams"
    common = ["--params", str(params), "--root", str(small_voc), "--split", "train", "--quiet"]
    assert train_cam.main([*common[:4], "--variant", "support", "--out", str(model), "--quiet"]) == 0
    assert make_cams.main([*common, "--model", str(model), "--out", str(cams)]) == 0
    assert (cams / "index.json").is_file()
    written = []

    def killed_after_two(path, arrays):
        if len(written) == 2:
            raise KeyboardInterrupt("killed")
        written.append(path)

    monkeypatch.setattr(inference, "save_cam_file", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        make_cams.main([*common, "--model", str(model), "--out", str(cams)])
    # The old index went first: evaluation refuses the mixed folder.
    assert not (cams / "index.json").exists()
    out = tmp_path / "seeds.json"
    assert (
        eval_cams.main([*common, "--cams", str(cams), "--out", str(out), "--per-image", str(tmp_path / "i.npz")]) == 1
    )
    assert not out.exists()


def test_make_cams_applies_the_refinement_its_params_name(tmp_path, small_raw, small_voc):
    from pixsup.cam.cam_files import load_cam_file
    from pixsup.cam.inference import infer_cams
    from pixsup.checkpoints import load_cam_net
    from pixsup.config import RefineConfig
    from pixsup.data.datasets import CamInferDataset

    plain_params = write_params(
        tmp_path / "plain.yaml", {**small_raw, "cam_train": {**small_raw["cam_train"], "epochs": 1}}
    )
    refine = {"method": "prototype", "features": "projection", "threshold": 0.4}
    refined_params = write_params(
        tmp_path / "refined.yaml",
        {
            **small_raw,
            "cam_train": {**small_raw["cam_train"], "epochs": 1},
            "cam_infer": {**small_raw.get("cam_infer", {}), "refine": refine},
        },
    )
    model = tmp_path / "model.pt"
    args = ["--root", str(small_voc), "--quiet"]
    assert train_cam.main(["--params", str(plain_params), *args, "--variant", "support", "--out", str(model)]) == 0
    for name, params in (("plain", plain_params), ("refined", refined_params)):
        argv = [
            "--params",
            str(params),
            *args,
            "--split",
            "train",
            "--model",
            str(model),
            "--out",
            str(tmp_path / name),
        ]
        assert make_cams.main(argv) == 0
    item = CamInferDataset(small_voc, "train")[0]
    network, _ = load_cam_net(model)
    scales = tuple(small_raw.get("cam_infer", {}).get("scales", (1.0, 0.5, 1.5, 2.0)))
    expected = infer_cams(network.eval(), item["image"], item["label"], scales=scales, refine=RefineConfig(**refine))
    refined = load_cam_file(tmp_path / "refined" / f"{item['id']}.npz")
    plain = load_cam_file(tmp_path / "plain" / f"{item['id']}.npz")
    np.testing.assert_allclose(
        refined["high_res"].astype(np.float32), expected["high_res"].astype(np.float32), atol=2e-3
    )
    assert np.abs(refined["high_res"].astype(np.float32) - plain["high_res"].astype(np.float32)).mean() > 0.01
