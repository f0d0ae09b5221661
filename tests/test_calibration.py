"""Refinement thresholds calibrated to a variant's seed curve: the rule, and the steps that apply it."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from pixsup.config import ConfigError, load_params
from pixsup.errors import DataError
from pixsup.pseudo_labels.calibration import calibrate
from pixsup.steps import make_ir_labels, make_pseudo_masks
from test_seg_steps import work  # noqa: F401  (the module fixture: params, a CAM network, its CAMs)

from conftest import write_params

ALL = ("conf_fg_threshold", "conf_bg_threshold", "bg_threshold")


def _cfg(tmp_path, **pseudo_labels):
    values = {"pseudo_labels": {"calibration": "seed_curve", **pseudo_labels}}
    return load_params(write_params(tmp_path / "params.yaml", values)).pseudo_labels


def _seeds(tmp_path, best_threshold) -> str:
    path = tmp_path / "seeds_train_full.json"
    path.write_text(json.dumps({"miou": 40.0, "best_threshold": best_threshold}))
    return str(path)


def test_irns_values_move_with_the_seed_threshold(tmp_path):
    cfg = _cfg(tmp_path)  # IRN's 0.30 / 0.05 / 0.25 for a seed threshold of 0.15
    # t* = 0.35: foreground and mask background keep their distance to t* (0.30 - 0.15 = 0.15 and
    # 0.25 - 0.15 = 0.10), confident background its ratio (0.05 / 0.15 = 1/3).
    calibrated, values = calibrate(cfg, _seeds(tmp_path, 0.35), ALL)
    assert values == {"conf_fg_threshold": 0.5, "conf_bg_threshold": 0.1167, "bg_threshold": 0.45}
    assert (calibrated.conf_fg_threshold, calibrated.bg_threshold, calibrated.crf) == (0.5, 0.45, cfg.crf)
    # At the reference the configured values are used as they are.
    assert calibrate(cfg, _seeds(tmp_path, 0.15), ALL)[1] == {
        "conf_fg_threshold": 0.3,
        "conf_bg_threshold": 0.05,
        "bg_threshold": 0.25,
    }
    # Far from it, values stay where a normalised CAM can cross them.
    assert calibrate(cfg, _seeds(tmp_path, 0.9), ALL)[1]["conf_fg_threshold"] == 0.99
    # Only the thresholds asked for are read and given.
    assert calibrate(cfg, _seeds(tmp_path, 0.35), ("bg_threshold",))[1] == {"bg_threshold": 0.45}


def test_a_calibration_that_crosses_the_thresholds_is_refused(tmp_path):
    # A confident background above the reference grows faster than the foreground: 0.2 * 4 against 0.3 + 0.45.
    cfg = _cfg(tmp_path, conf_bg_threshold=0.2)
    with pytest.raises(ConfigError, match="confident background 0.8 is not below confident foreground 0.75"):
        calibrate(cfg, _seeds(tmp_path, 0.6), ALL)


def test_seed_curve_needs_the_seed_metrics_and_a_best_threshold(tmp_path):
    cfg = _cfg(tmp_path)
    with pytest.raises(ConfigError, match="--seed-metrics"):
        calibrate(cfg, None, ALL)
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"miou": 30.0}))
    with pytest.raises(DataError, match="broken.json: no best_threshold"):
        calibrate(cfg, broken, ALL)
    # calibration none ignores the file.
    plain = load_params(write_params(tmp_path / "plain.yaml", {})).pseudo_labels
    assert calibrate(plain, None, ALL)[1]["conf_fg_threshold"] == 0.3


def _labels(folder) -> dict[str, np.ndarray]:
    return {p.stem: np.array(Image.open(p)) for p in sorted(folder.glob("*.png"))}


def test_calibrated_steps_equal_the_same_thresholds_given_by_hand(work, tmp_path):  # noqa: F811
    """seed_curve with t* = 0.35 labels exactly as `none` with 0.50 / 0.1167 / 0.45 written in the config."""
    root, cams = str(work["root"]), str(work["cams"])
    raw = json.loads(json.dumps(load_params(work["params"]).model_dump(mode="json")))
    calibrated = json.loads(json.dumps(raw))
    calibrated["pseudo_labels"]["calibration"] = "seed_curve"
    by_hand = json.loads(json.dumps(raw))
    by_hand["pseudo_labels"].update(conf_fg_threshold=0.5, conf_bg_threshold=0.1167, bg_threshold=0.45)
    seeds = tmp_path / "seeds_train_full.json"
    seeds.write_text(json.dumps({"miou": 40.0, "best_threshold": 0.35}))
    outputs = {}
    for name, values, extra in (("calibrated", calibrated, ["--seed-metrics", str(seeds)]), ("by_hand", by_hand, [])):
        params = str(write_params(tmp_path / f"{name}.yaml", values))
        common = ["--params", params, "--root", root, "--cams", cams, "--quiet", *extra]
        ir, masks = tmp_path / name / "ir", tmp_path / name / "cam"
        assert make_ir_labels.main([*common, "--out", str(ir)]) == 0
        assert make_pseudo_masks.main([*common, "--method", "cam", "--out", str(masks)]) == 0
        outputs[name] = (_labels(ir), _labels(masks), json.loads((masks / "index.json").read_text()))
    for kind in (0, 1):
        a, b = outputs["calibrated"][kind], outputs["by_hand"][kind]
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert outputs["calibrated"][2]["bg_threshold"] == 0.45
    # The calibration changed the labels: the configured values give other masks.
    plain = tmp_path / "plain"
    params = str(write_params(tmp_path / "plain.yaml", raw))
    assert make_pseudo_masks.main(["--params", params, "--root", root, "--cams", cams, "--method", "cam",
                                   "--out", str(plain), "--quiet"]) == 0  # fmt: skip
    assert any(not np.array_equal(v, outputs["by_hand"][1][k]) for k, v in _labels(plain).items())
