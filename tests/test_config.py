"""The params schema: params.yaml is valid and complete, unknown keys and bad values are named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from pixsup.config import (
    DATASET_KEYS,
    STEP_KEYS,
    WORKFLOW_KEYS,
    ConfigError,
    Params,
    load_params,
    load_step_params,
    parse_params,
    select_keys,
    step_keys,
)

REPO = Path(__file__).resolve().parents[1]


def _leaf_keys(node: dict, prefix: str = "") -> set[str]:
    keys = set()
    for key, value in node.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            keys |= _leaf_keys(value, path + ".")
        else:
            keys.add(path)
    return keys


def test_params_yaml_is_valid_and_sets_every_key():
    params = load_params(REPO / "params.yaml")
    written = _leaf_keys(yaml.safe_load((REPO / "params.yaml").read_text()))
    schema = _leaf_keys(Params().model_dump(mode="json"))
    # Every value of the schema appears in params.yaml, so the file documents them all.
    assert schema - written == set()
    assert params.cam_train.backbone == "tiny"


def test_params_yaml_comments_every_key():
    for number, line in enumerate((REPO / "params.yaml").read_text().splitlines(), 1):
        if line.strip() and not line.lstrip().startswith("#"):
            assert "#" in line, f"params.yaml line {number} has no comment: {line}"


@pytest.mark.parametrize(
    "key",
    [
        "cam_train.proj_dim",
        "cam_train.support.kind",
        "cam_train.support.ema_momentum",
        "cam_train.rcm.fg_threshold",
        "cam_train.rcm.bg_threshold",
        "cam_train.rcm.tau",
        "cam_train.rcm.memory",
        "cam_train.rcm.weight",
        "cam_train.mam.scales",
        "cam_train.mam.temperature",
        "cam_train.mam.fusion",
        "cam_train.mam.one_sided",
        "cam_train.mam.weight",
        "cam_train.warmup_epochs",
        "cam_train.lr",
        "cam_train.head_lr_mult",
        "cam_train.momentum",
        "cam_train.weight_decay",
        "cam_train.poly_power",
        "cam_train.batch_size",
        "cam_train.epochs",
        "cam_train.augment.resize_long",
        "cam_train.augment.crop_size",
        "cam_infer.scales",
        "cam_infer.flip",
        "cam_eval.threshold_min",
        "cam_eval.threshold_max",
    ],
)
def test_every_method_hyperparameter_is_a_key(key):
    assert key in _leaf_keys(Params().model_dump(mode="json"))


def test_method_defaults():
    cfg = Params().cam_train
    assert (cfg.rcm.fg_threshold, cfg.rcm.bg_threshold, cfg.rcm.tau) == (0.30, 0.05, 0.1)
    assert cfg.mam.scales == (0.5, 1.0, 1.5) and cfg.mam.temperature == 2.0
    assert cfg.support.kind == "frozen" and cfg.support.ema_momentum == 0.996
    assert cfg.backbone == "resnet50" and cfg.augment.crop_size == 512 and cfg.augment.resize_long == (320, 640)
    assert Params().cam_infer.scales == (1.0, 0.5, 1.5, 2.0)


def test_unknown_key_is_named_with_its_path(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("cam_train:\n  mam:\n    fusoin: max\n")
    with pytest.raises(ConfigError, match=r"p\.yaml: unknown key 'cam_train\.mam\.fusoin'"):
        load_params(path)


def test_unknown_section_and_bad_values(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'seg_trian'"):
        parse_params({"seg_trian": {}})
    with pytest.raises(ConfigError, match=r"cam_train\.mam\.fusion"):
        parse_params({"cam_train": {"mam": {"fusion": "median"}}})
    with pytest.raises(ConfigError, match=r"cam_train\.augment.*lo <= hi"):
        parse_params({"cam_train": {"augment": {"resize_long": [640, 320]}}})
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        parse_params([1, 2])


def test_missing_or_broken_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_params(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("cam_train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_params(bad)


def test_a_step_file_holds_only_the_steps_values_and_refuses_any_other_read(tmp_path):
    params = load_params(REPO / "params.yaml")
    resolved = tmp_path / "train_irn.yaml"
    resolved.write_text(yaml.safe_dump(select_keys(params, step_keys("train_irn", params))))
    written = yaml.safe_load(resolved.read_text())
    assert list(written) == ["pseudo_labels"] and list(written["pseudo_labels"]) == ["irn"]
    assert "radius" not in written["pseudo_labels"]["irn"] and "bg_threshold" not in written["pseudo_labels"]
    step = load_step_params(resolved, "train_irn")
    assert step.pseudo_labels.irn.lr == params.pseudo_labels.irn.lr
    assert step.pseudo_labels.irn.resize_long == params.pseudo_labels.irn.resize_long
    # A value the step does not declare is an error, never the schema's default.
    with pytest.raises(ConfigError, match=r"train_irn.yaml: step 'train_irn' read 'pseudo_labels.irn.radius'"):
        step.pseudo_labels.irn.radius
    with pytest.raises(ConfigError, match=r"read 'seg_train'"):
        step.seg_train
    # The whole params.yaml serves a step run by hand; the same reads are refused there too.
    whole = load_step_params(REPO / "params.yaml", "make_ir_labels")
    assert whole.pseudo_labels.crf.gt_prob == 0.7
    with pytest.raises(ConfigError, match=r"read 'pseudo_labels.bg_threshold'"):
        whole.pseudo_labels.bg_threshold


def _leaves(tree: dict, prefix: str = "") -> set[str]:
    leaves: set[str] = set()
    for name, value in tree.items():
        if isinstance(value, dict):
            leaves |= _leaves(value, f"{prefix}{name}.")
        else:
            leaves.add(prefix + name)
    return leaves


def test_every_value_in_params_yaml_is_read_by_a_step_or_by_the_workflow():
    declared = [key for keys in (*STEP_KEYS.values(), *DATASET_KEYS.values(), WORKFLOW_KEYS) for key in keys]
    unread = [
        leaf
        for leaf in sorted(_leaves(yaml.safe_load((REPO / "params.yaml").read_text())))
        if not any(leaf == key or leaf.startswith(key + ".") for key in declared)
    ]
    assert unread == []
    # make_report hashes every value that decides a result; prepare_data alone reads the data's origin.
    assert not any(key.startswith("data.voc12") for key in step_keys("make_report", Params()))


def test_prepare_data_reads_the_values_of_its_dataset_only():
    synthetic = step_keys("prepare_data", Params())
    voc = step_keys("prepare_data", parse_params({"data": {"dataset": "voc12"}}))
    assert "data.synthetic" in synthetic and not any(key.startswith("data.voc12") for key in synthetic)
    assert "data.voc12.aug_url" in voc and "data.synthetic" not in voc
    # The MD5 pins belong to check_downloads alone, so pinning one does not rerun the data.
    assert not any(key.endswith("_md5") for key in voc)
    with pytest.raises(ConfigError, match="no step 'train_cams' reads params"):
        step_keys("train_cams", Params())


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"cam_train": {"seed": -1}}, "cam_train.seed: Input should be greater than or equal to 0"),
        ({"seg_train": {"seed": -3}}, "seg_train.seed: Input should be greater than or equal to 0"),
        (
            {"cam_train": {"augment": {"resize_long": [0, 0]}}},
            "cam_train.augment.resize_long.0: Input should be greater",
        ),
        ({"pseudo_labels": {"irn": {"resize_long": [200, 100]}}}, "resize_long [200, 100] must be [lo, hi]"),
        ({"cam_infer": {"scales": [1.0, 0.0]}}, "cam_infer.scales.1: Input should be greater than 0"),
        ({"cam_train": {"mam": {"scales": [-0.5, 1.0]}}}, "cam_train.mam.scales.0: Input should be greater than 0"),
        ({"seg_infer": {"scales": [1.0, -1.0]}}, "seg_infer.scales.1: Input should be greater than 0"),
        ({"seg_train": {"backbone": "resnet5"}}, "seg_train.backbone: unknown backbone 'resnet5'; registered: res"),
        ({"data": {"root": "data/VOC{2012}"}}, "data.root: 'data/VOC{2012}' holds a brace, which Snakemake reads"),
        ({"data": {"root": "data/VOC2012\ntouch x"}}, "data.root: 'data/VOC2012\\ntouch x' holds a control char"),
        ({"data": {"root": " "}}, "data.root: an empty path"),
        ({"data": {"cls_labels_npy": "-x.npy"}}, "starts with '-' and would be read as an option; write ./-x.npy"),
        ({"cam_train": {"pretrained": "w\x00.pt"}}, "cam_train.pretrained: 'w\\x00.pt' holds a control character"),
        ({"data": {"voc12": {"voc_url": "ftp://x/a.tar"}}}, "data.voc12.voc_url: 'ftp://x/a.tar' is not an http://"),
        ({"data": {"voc12": {"aug_md5": "abc"}}}, "data.voc12.aug_md5: 'abc' is not an MD5 (32 hex digits)"),
    ],
)
def test_values_a_step_would_refuse_are_refused_by_the_schema(raw, message):
    with pytest.raises(ConfigError) as info:
        parse_params(raw)
    assert message in str(info.value)


def test_paths_with_spaces_and_shell_characters_are_kept_as_written():
    """The rules quote every value, so a path needs no escaping: only what breaks a rule is refused."""
    root = "my data/VOC2012 $(touch x); 'quoted'"
    params = parse_params({"data": {"root": root, "voc12": {"voc_md5": "6CD6E144F989B92B3379BAC3B3DE84FD"}}})
    assert params.data.root == root
    assert params.data.voc12.voc_md5 == "6cd6e144f989b92b3379bac3b3de84fd"


def test_a_registered_backbone_is_accepted_by_the_schema():
    from torch import nn

    from pixsup.config import KNOWN_BACKBONES
    from pixsup.models import BACKBONES, register_backbone

    assert sorted(BACKBONES) == sorted(KNOWN_BACKBONES)  # the table and the schema name the same networks
    with pytest.raises(ConfigError, match="cam_train.backbone: unknown backbone 'mine'"):
        parse_params({"cam_train": {"backbone": "mine"}})
    register_backbone("mine")(lambda pretrained="auto": nn.Identity())
    try:
        assert parse_params({"cam_train": {"backbone": "mine"}}).cam_train.backbone == "mine"
    finally:
        del BACKBONES["mine"]
        KNOWN_BACKBONES.remove("mine")


def test_write_params_writes_a_steps_values_and_refuses_any_it_does_not_read(tmp_path, capsys):
    from pixsup.steps import write_params

    out = tmp_path / "eval_cams.yaml"
    values = {"cam_eval": {"threshold_min": 0.1, "threshold_max": 0.5, "threshold_step": 0.02}}
    assert write_params.main(["--step", "eval_cams", "--values", json.dumps(values), "--out", str(out)]) == 0
    assert yaml.safe_load(out.read_text()) == values
    extra = {**values, "cam_infer": {"flip": False}}
    status = write_params.main(
        ["--step", "eval_cams", "--values", json.dumps(extra), "--out", str(tmp_path / "x.yaml")]
    )
    assert status == 2 and "step 'eval_cams' does not read cam_infer.flip" in capsys.readouterr().err
    assert not (tmp_path / "x.yaml").exists()
