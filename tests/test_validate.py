"""Every kind of bad input is reported, with the file named, by check_item, validate_split, the CLI and the datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixsup.config import AugmentConfig
from pixsup.data.datasets import CamInferDataset, CamTrainDataset
from pixsup.data.validate import check_item, validate_split
from pixsup.data.voc import DataError, VocIndex
from pixsup.steps.validate_data import main

from fake_voc import block_mask, image, write_item, write_split

GOOD = "2000_000001"
# id -> (a word the message must contain, the file it must name, relative to the root)
BAD = {
    "2000_000002": ("cannot decode image", "JPEGImages/2000_000002.jpg"),
    "2000_000003": ("cannot decode mask", "SegmentationClass/2000_000003.png"),
    "2000_000004": ("values [37] outside 0..20 and 255", "SegmentationClass/2000_000004.png"),
    "2000_000005": ("size 20x32 (h x w) differs from image", "SegmentationClass/2000_000005.png"),
    "2000_000006": ("image missing", "JPEGImages/2000_000006.jpg"),
    "2000_000007": ("label empty for id 2000_000007", "Annotations/2000_000007.xml"),
    "2000_000008": ("mode 'RGB', expected 8-bit 'P' or 'L'", "SegmentationClassAug/2000_000008.png"),
}


def _build(root: Path) -> None:
    write_item(root, GOOD, mask=block_mask(), objects=[15])
    write_item(root, "2000_000002", objects=[8])
    (root / "JPEGImages" / "2000_000002.jpg").write_bytes(np.random.default_rng(0).bytes(600))
    write_item(root, "2000_000003", mask=block_mask(), objects=[8])
    png = root / "SegmentationClass" / "2000_000003.png"
    png.write_bytes(png.read_bytes()[: png.stat().st_size // 2])
    bad_values = block_mask()
    bad_values[0, 0] = 37
    write_item(root, "2000_000004", mask=bad_values, objects=[15])
    write_item(root, "2000_000005", mask=block_mask(height=20), objects=[15])
    write_item(root, "2000_000006", objects=[15])
    (root / "JPEGImages" / "2000_000006.jpg").unlink()
    write_item(root, "2000_000007", objects=[])
    write_item(root, "2000_000008", objects=[15])
    (root / "SegmentationClassAug").mkdir()
    Image.fromarray(image()).save(root / "SegmentationClassAug" / "2000_000008.png")
    write_split(root, "train", [GOOD, *BAD, GOOD])
    write_split(root, "clean", [GOOD])


@pytest.fixture
def root(tmp_path: Path) -> Path:
    _build(tmp_path)
    return tmp_path


def test_good_item_has_no_problem(root: Path) -> None:
    assert check_item(VocIndex(root), GOOD, require_mask=True) == []


@pytest.mark.parametrize("image_id", sorted(BAD))
def test_each_bad_item_names_its_file(root: Path, image_id: str) -> None:
    words, relative = BAD[image_id]
    problems = check_item(VocIndex(root), image_id, require_mask=False)
    assert len(problems) == 1, problems
    assert words in problems[0]
    assert problems[0].startswith(str(root / relative)), problems[0]


def test_size_mismatch_gives_both_sizes(root: Path) -> None:
    [problem] = check_item(VocIndex(root), "2000_000005", require_mask=False)
    assert "20x32" in problem and "24x32" in problem and str(root / "JPEGImages" / "2000_000005.jpg") in problem


def test_truncated_jpeg_fails(root: Path) -> None:
    # Decoders happily return grey for a cut-off JPEG unless asked not to.
    jpeg = root / "JPEGImages" / f"{GOOD}.jpg"
    jpeg.write_bytes(jpeg.read_bytes()[: int(jpeg.stat().st_size * 0.7)])
    [problem] = check_item(VocIndex(root), GOOD, require_mask=False)
    assert problem.startswith(f"{jpeg}: cannot decode image") and "truncated" in problem


def test_16_bit_mask_rejected(root: Path) -> None:
    path = root / "SegmentationClass" / f"{GOOD}.png"
    Image.fromarray(block_mask().astype(np.uint16)).save(path)
    [problem] = check_item(VocIndex(root), GOOD, require_mask=False)
    assert problem.startswith(f"{path}: mode 'I;16'") and "expected 8-bit 'P' or 'L'" in problem


def test_required_mask_missing_lists_both_folders(root: Path) -> None:
    problems = check_item(VocIndex(root), "2000_000007", require_mask=True)
    [missing] = [p for p in problems if "mask missing" in p]
    assert str(root / "SegmentationClass" / "2000_000007.png") in missing
    assert str(root / "SegmentationClassAug" / "2000_000007.png") in missing


def test_validate_split_reports_everything_in_one_run(root: Path) -> None:
    problems = validate_split(VocIndex(root), "train", require_mask=False, progress=False)
    split_file = root / "ImageSets" / "Segmentation" / "train.txt"
    assert f"{split_file}: id {GOOD} listed 2 times" in problems
    for image_id, (words, relative) in BAD.items():
        assert any(p.startswith(str(root / relative)) and words in p for p in problems), image_id
    assert len(problems) == 1 + len(BAD)
    # Requiring masks adds exactly the ids that have none.
    strict = validate_split(VocIndex(root), "train", require_mask=True, progress=False)
    assert sorted(p.split(":")[0] for p in set(strict) - set(problems)) == [
        "mask missing for id 2000_000002",
        "mask missing for id 2000_000006",
        "mask missing for id 2000_000007",
    ]


def test_cli_exits_1_and_prints_every_file(root: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    report = tmp_path / "out" / "report.json"
    code = main(["--root", str(root), "--split", "train", "--report", str(report)])
    out = capsys.readouterr().out
    assert code == 1
    for _, relative in BAD.values():
        assert str(root / relative) in out
    assert out.strip().splitlines()[-1] == f"{1 + len(BAD)} ids checked, {1 + len(BAD)} problems"
    saved = json.loads(report.read_text())
    assert saved["root"] == str(root) and saved["split"] == "train" and saved["ids"] == 1 + len(BAD)
    assert saved["problems"] == out.strip().splitlines()[:-1]


def test_cli_clean_split_exits_0(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--root", str(root), "--split", "clean", "--require-mask"]) == 0
    assert capsys.readouterr().out.strip() == "1 ids checked, 0 problems"


def test_cli_missing_split_exits_1(root: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["--root", str(root), "--split", "val"]) == 1
    out = capsys.readouterr().out
    assert str(root / "ImageSets" / "Segmentation" / "val.txt") in out and "clean, train" in out


def test_cli_cls_labels_npy_missing_id(root: Path, capsys: pytest.CaptureFixture) -> None:
    npy = Path(__file__).parent / "data" / "voc_sample" / "cls_labels" / "cls_labels.npy"
    assert main(["--root", str(root), "--split", "clean", "--cls-labels-npy", str(npy)]) == 1
    assert f"{npy}: no entry for id {GOOD}" in capsys.readouterr().out


@pytest.mark.parametrize(
    "make",
    [
        lambda root: CamInferDataset(root, "listed_once"),
        lambda root: CamTrainDataset(root, "listed_once", AugmentConfig(resize_long=(24, 40), crop_size=32), seed=0),
    ],
)
def test_datasets_check_lazily_with_the_same_messages(root: Path, make) -> None:
    write_split(root, "listed_once", [GOOD, *BAD])  # a step refuses an id listed twice
    dataset = make(root)  # constructing does not decode anything, bad ids included
    assert dataset.ids[0] == GOOD and dataset[0]["id"] == GOOD
    index = VocIndex(root)
    for i, image_id in enumerate(dataset.ids):
        if image_id in BAD:
            with pytest.raises(DataError) as info:
                dataset[i]
            assert str(info.value) == "; ".join(check_item(index, image_id, require_mask=False))
            assert str(root / BAD[image_id][1]) in str(info.value)


def test_infer_dataset_item(root: Path) -> None:
    item = CamInferDataset(root, "clean")[0]
    assert item["image"].dtype == np.uint8 and item["image"].shape == (24, 32, 3)
    assert item["label"].dtype == np.float32 and np.flatnonzero(item["label"]).tolist() == [14]


def test_each_item_is_checked_once_across_loader_workers_and_epochs(root: Path, monkeypatch) -> None:
    import torch.utils.data

    from pixsup.data import datasets

    goods = [f"2000_00001{i}" for i in range(4)]
    for image_id in goods:
        write_item(root, image_id, mask=block_mask(), objects=[15])
    write_split(root, "goods", goods)
    dataset = CamTrainDataset(root, "goods", AugmentConfig(resize_long=(24, 40), crop_size=32), seed=0)

    def epoch() -> list:
        return list(torch.utils.data.DataLoader(dataset, batch_size=2, num_workers=2))

    epoch()  # the workers check every item; their flags reach this process and later workers
    assert bool(dataset._checked.all())

    def fail(*args, **kwargs):
        raise AssertionError("an item was checked again")

    monkeypatch.setattr(datasets, "check_item", fail)
    assert len(epoch()) == 2  # new worker processes, nothing checked again


@pytest.mark.parametrize("height, width", [(24, 24), (24, 32)])
def test_an_exif_rotated_photo_is_named_not_used_sideways(root: Path, height: int, width: int) -> None:
    image_id = "2000_000021"
    write_item(root, image_id, mask=block_mask(height=height, width=width), objects=[15])
    exif = Image.Exif()
    exif[0x0112] = 6  # stored landscape, shown turned a quarter clockwise
    Image.fromarray(image(height=height, width=width)).save(root / "JPEGImages" / f"{image_id}.jpg", exif=exif)
    problems = check_item(VocIndex(root), image_id, require_mask=True)
    assert problems == [
        f"{root / 'JPEGImages' / f'{image_id}.jpg'}: EXIF orientation 6 (viewers show it turned a quarter clockwise),"
        " while masks and CAMs use the stored pixels; save the image upright without the tag and check its mask"
    ]
    write_split(root, "rotated", [image_id])
    with pytest.raises(DataError, match="EXIF orientation 6"):
        CamInferDataset(root, "rotated")[0]


def test_a_test_split_is_checked_for_images_only_and_may_be_absent(root: Path, tmp_path: Path) -> None:
    report = tmp_path / "report.json"
    assert main(["--root", str(root), "--split", "test", "--images-only", "--optional", "--report", str(report)]) == 0
    assert json.loads(report.read_text())["absent"] is True
    # Images without masks or labels pass; an undecodable one is named.
    write_item(root, "2000_000031")
    (root / "Annotations" / "2000_000031.xml").unlink(missing_ok=True)
    write_split(root, "test", ["2000_000031", "2000_000002"])
    assert main(["--root", str(root), "--split", "test", "--images-only", "--optional", "--report", str(report)]) == 1
    assert json.loads(report.read_text())["problems"] == [
        problem for problem in check_item(VocIndex(root), "2000_000002", require_mask=False) if "JPEGImages" in problem
    ]
