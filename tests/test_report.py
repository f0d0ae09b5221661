"""Report tables and provenance from hand-made metrics files."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from pixsup.report.build import dataset_hash, params_hash
from pixsup.report.tables import (
    ablation_table,
    load_peers,
    seeds_masks_table,
    segmentation_table,
    to_latex,
    to_markdown,
    write_table,
)


def _seed(miou: float, threshold: float) -> dict:
    return {"miou": miou, "best_threshold": threshold, "curve": [{"threshold": threshold, "miou": miou}]}


SEEDS = {"support": _seed(40.0, 0.2), "rcm": _seed(41.5, 0.25), "mam": _seed(43.25, 0.3), "full": _seed(44.0, 0.35)}


def test_ablation_has_the_rows_present_in_order_with_module_flags():
    table = ablation_table({name: [m] for name, m in SEEDS.items()}, "resnet50", "voc12")
    assert list(table.columns[:7]) == ["variant", "rcm", "mam", "seeds", "seed_miou", "seed_miou_sd", "best_threshold"]
    assert list(table["variant"]) == ["baseline", "rcm", "mam", "full"]
    assert list(table["rcm"]) == [False, True, False, True] and list(table["mam"]) == [False, False, True, True]
    assert list(table["seed_miou"]) == [40.0, 41.5, 43.25, 44.0]
    # One seed: no deviation; no per-image confusions: no intervals.
    assert table["seed_miou_sd"].isna().all() and table["vs_support"].isna().all()


def _confusions(rng: np.random.Generator, error: float, n: int = 30) -> np.ndarray:
    """Per-image (3, 3) confusions of a labelling wrong on a pixel with probability ``error``."""
    out = np.zeros((n, 3, 3), np.int64)
    for i in range(n):
        gt = rng.integers(0, 3, 300)
        pred = np.where(rng.random(300) < error, rng.integers(0, 3, 300), gt)
        np.add.at(out[i], (gt, pred), 1)
    return out


def test_ablation_gives_mean_sd_over_seeds_and_paired_intervals():
    rng = np.random.default_rng(0)
    errors = {"support": 0.3, "baseline_same_budget": 0.3, "full": 0.1}
    confusions = {name: [_confusions(rng, e), _confusions(rng, e)] for name, e in errors.items()}

    # Seed metrics as eval_cams would write them, from the definition of mIoU.
    def miou(conf):
        total = conf.sum(0)
        tp = np.diag(total)
        return 100 * float(np.mean(tp / (total.sum(0) + total.sum(1) - tp)))

    seeds = {name: [_seed(miou(c), 0.2) for c in runs] for name, runs in confusions.items()}
    table = ablation_table(seeds, "tiny", "synthetic", confusions, samples=500).set_index("variant")
    full = table.loc["full"]
    values = [miou(c) for c in confusions["full"]]
    assert full["seeds"] == 2
    assert full["seed_miou"] == pytest.approx(np.mean(values), abs=1e-3)
    assert full["seed_miou_sd"] == pytest.approx(abs(values[0] - values[1]) / np.sqrt(2), abs=1e-3)
    expected = np.mean([miou(a) - miou(b) for a, b in zip(confusions["full"], confusions["support"])])
    assert full["vs_support"] == pytest.approx(expected, abs=1e-3)
    assert full["vs_support_low"] < full["vs_support"] < full["vs_support_high"]
    # A tenth of the pixels wrong against three tenths: both intervals are far from 0.
    assert full["vs_support_low"] > 0 and full["vs_same_budget_low"] > 0 and full["interval_includes_0"] == ""
    # Two labellings of the same quality: the interval includes 0, and the table says so.
    assert table.loc["baseline (same budget)", "interval_includes_0"] == "vs_support"
    assert pd.isna(table.loc["baseline", "vs_support"]) and pd.isna(
        table.loc["baseline (same budget)", "vs_same_budget"]
    )
    markdown = to_markdown(table.reset_index())
    assert f"{full['seed_miou']:.2f} ± {full['seed_miou_sd']:.2f}" in markdown
    assert f"{full['vs_support']:+.2f} [{full['vs_support_low']:+.2f}, {full['vs_support_high']:+.2f}]" in markdown


def test_seeds_masks_puts_ours_above_peers_with_sources():
    peers = load_peers()
    sources = {name: f"this run: {name}.json" for name in SEEDS}
    sources.update({"full:irn": "this run: irn.json", "full:crf": "this run: crf.json"})
    masks = {"full:irn": {"miou": 61.0}, "full:crf": {"miou": 58.5}}
    table = seeds_masks_table(SEEDS, masks, sources, "resnet50", peers, "voc12", mask_method="irn")
    assert list(table["method"][:5]) == [
        "ours: baseline",
        "ours: rcm",
        "ours: mam",
        "ours: full + irn masks",
        "ours: full + crf masks",
    ]
    full_rows = table[table["method"].str.startswith("ours: full")]
    assert list(full_rows["mask_miou"]) == [61.0, 58.5] and list(full_rows["seed_miou"]) == [44.0, 44.0]
    assert pd.isna(table.loc[table["method"] == "ours: rcm", "mask_miou"].item())
    advcam = table[table["method"] == "AdvCAM"].iloc[0]
    assert (advcam["seed_miou"], advcam["mask_miou"]) == (55.6, 69.9) and "CVPR 2021" in advcam["source"]
    assert all(table["source"].str.len() > 0)


def test_seeds_masks_gives_masks_minus_their_seeds_with_intervals():
    rng = np.random.default_rng(1)
    seed_confusions = {"full": [_confusions(rng, 0.3), _confusions(rng, 0.3)]}
    mask_confusions = {"full:irn": [_confusions(rng, 0.1), _confusions(rng, 0.1)], "full:cam": seed_confusions["full"]}

    def miou(conf):  # the definition, as in the ablation test
        total = conf.sum(0)
        tp = np.diag(total)
        return 100 * float(np.mean(tp / (total.sum(0) + total.sum(1) - tp)))

    seeds = {"full": {"miou": float(np.mean([miou(c) for c in seed_confusions["full"]]))}}
    masks = {key: {"miou": float(np.mean([miou(c) for c in runs]))} for key, runs in mask_confusions.items()}
    sources = {"full": "s", "full:irn": "i", "full:cam": "c"}
    table = seeds_masks_table(
        seeds, masks, sources, "tiny", [], "synthetic", "irn", seed_confusions, mask_confusions, samples=500
    ).set_index("method")
    irn, cam = table.loc["ours: full + irn masks"], table.loc["ours: full + cam masks"]
    expected = np.mean([miou(m) - miou(c) for m, c in zip(mask_confusions["full:irn"], seed_confusions["full"])])
    assert irn["mask_vs_seeds"] == pytest.approx(expected, abs=1e-3)
    assert 0 < irn["mask_vs_seeds_low"] < irn["mask_vs_seeds"] < irn["mask_vs_seeds_high"]
    # Masks that are their seeds, image for image: no difference in any resample.
    assert cam["mask_vs_seeds"] == cam["mask_vs_seeds_low"] == cam["mask_vs_seeds_high"] == 0.0
    assert set(table.attrs["mask_vs_seeds"]) == {"full:irn", "full:cam"}
    assert f"{irn['mask_vs_seeds']:+.2f} [{irn['mask_vs_seeds_low']:+.2f}," in to_markdown(table.reset_index())


def test_segmentation_lists_ours_per_mode_then_peers_with_val_or_test():
    seg = {"ss": {"miou": 60.5}, "ms": {"miou": 62.25}}
    sources = {"ss": "this run: ss.json", "ms": "this run: ms.json"}
    table = segmentation_table(seg, sources, "resnet101", load_peers(), "voc12", "full + irn masks")
    assert list(table["method"]) == [
        "ours: full + irn masks, single scale",
        "ours: full + irn masks, multi-scale + flip",
        "AdvCAM",
    ]
    assert list(table["val_miou"]) == [60.5, 62.25, 68.1]
    assert pd.isna(table["test_miou"][0]) and table["test_miou"][2] == 68.0
    assert "; test: submit the tar to the evaluation server)" in table.attrs["caption"]
    skipped = segmentation_table(seg, sources, "resnet101", [], "voc12", "full + irn masks", "no test.txt")
    assert "; no test submission: no test.txt)" in skipped.attrs["caption"]


def test_every_peer_needs_a_source(tmp_path):
    path = tmp_path / "peers.yaml"
    path.write_text(yaml.safe_dump({"peers": [{"method": "X", "seed": 50.0}]}))
    with pytest.raises(ValueError, match="needs a method and a source"):
        load_peers(path)


def test_markdown_latex_and_csv_carry_the_same_numbers(tmp_path):
    table = ablation_table({name: [m] for name, m in SEEDS.items()}, "tiny", "synthetic")
    markdown = to_markdown(table)
    assert "| mam |  | ✓ | 1 | 43.25 | 0.30 | – | – |  |" in markdown
    latex = to_latex(table)
    assert "seed\\_miou" in latex and "mam &  & \\checkmark & 1 & 43.25 & 0.30 & -- & -- &  \\\\" in latex
    paths = write_table(table, tmp_path / "tables" / "ablation")
    assert [p.suffix for p in paths] == [".csv", ".md", ".tex"]
    assert pd.read_csv(paths[0])["seed_miou"].tolist() == [40.0, 41.5, 43.25, 44.0]


def test_provenance_hashes(tmp_path):
    assert params_hash({"a": 1, "b": 2}) == params_hash({"b": 2, "a": 1}) != params_hash({"a": 1, "b": 3})
    lock = tmp_path / "dvc.lock"
    lock.write_text(
        yaml.safe_dump(
            {
                "schema": "2.0",
                "stages": {
                    "prepare_data": {
                        "outs": [
                            {"path": "data/synthetic/VOC2012", "md5": "abc.dir"},
                            {"path": "results/synthetic/data", "md5": "x"},
                        ]
                    }
                },
            }
        )
    )
    assert dataset_hash(lock, "data/synthetic/VOC2012/") == "abc.dir"
    assert dataset_hash(lock, "data/other") is None
    assert dataset_hash(tmp_path / "missing.lock", "data/synthetic/VOC2012") is None
