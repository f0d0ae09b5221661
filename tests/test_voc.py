"""The VOC reader against the real index files and a fabricated look-alike folder."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pixsup.data.voc import DataError, VocIndex, load_cls_labels_npy, read_split
from pixsup.data.voc_format import CLASS_ID, IGNORE_INDEX, voc_palette

from fake_voc import FIXTURES, block_mask, image, write_item, write_split

REAL_ROOT = FIXTURES / "VOC2012"
REAL_NPY = FIXTURES / "cls_labels" / "cls_labels.npy"


def _classes(labels: np.ndarray) -> set[int]:
    """Multi-hot (index = id - 1) -> set of VOC class ids."""
    return {int(i) + 1 for i in np.flatnonzero(labels)}


# ------------------------------------------------------------ real index files


@pytest.mark.parametrize("split, count", [("train", 1464), ("val", 1449), ("train_aug", 10582), ("test", 1456)])
def test_real_split_sizes(split: str, count: int) -> None:
    ids = read_split(REAL_ROOT, split)
    assert len(ids) == count == len(set(ids))
    assert all(len(i) == 11 and i[4] == "_" for i in ids)


def test_real_split_relations() -> None:
    train, val, train_aug = (set(read_split(REAL_ROOT, s)) for s in ("train", "val", "train_aug"))
    assert train <= train_aug
    assert not val & train_aug
    assert not train & val


def test_missing_split_names_path_and_existing_splits() -> None:
    with pytest.raises(DataError) as info:
        read_split(REAL_ROOT, "trainval")
    message = str(info.value)
    assert str(REAL_ROOT / "ImageSets" / "Segmentation" / "trainval.txt") in message
    for existing in ("test", "train", "train_aug", "val"):
        assert existing in message


def test_cls_labels_npy_converted() -> None:
    labels = load_cls_labels_npy(REAL_NPY)
    assert len(labels) == 12031
    vector = labels["2007_000032"]
    assert vector.dtype == np.float32 and vector.shape == (20,)
    assert _classes(vector) == {CLASS_ID["aeroplane"], CLASS_ID["person"]} == {1, 15}
    # Every id of the train_aug and val lists has an entry; test ids have none.
    listed = set(read_split(REAL_ROOT, "train_aug")) | set(read_split(REAL_ROOT, "val"))
    assert listed == set(labels)
    assert not set(read_split(REAL_ROOT, "test")) & set(labels)


def test_cls_labels_missing_id_names_npy(tmp_path: Path) -> None:
    write_item(tmp_path, "2099_000001", objects=[8])
    index = VocIndex(tmp_path, load_cls_labels_npy(REAL_NPY))
    assert _classes(index.image_labels("2007_000039")) == {CLASS_ID["tvmonitor"]}  # no files needed
    with pytest.raises(DataError, match="no entry for id 2099_000001") as info:
        index.image_labels("2099_000001")
    assert str(REAL_NPY) in str(info.value)


# ------------------------------------------------------------ fabricated folder


@pytest.fixture
def voc(tmp_path: Path) -> VocIndex:
    # xml: XML says cat+dog, palette mask only shows cat -> XML wins.
    write_item(tmp_path, "2000_000001", mask=block_mask(class_id=8), objects=[8, 12])
    # aug: no XML, grayscale mask in SegmentationClassAug -> labels from mask.
    write_item(tmp_path, "2000_000002", mask=block_mask(class_id=3), aug_mask=True)
    # both: palette mask in SegmentationClass and a different Aug mask.
    write_item(tmp_path, "2000_000003", mask=block_mask(class_id=15))
    write_item(tmp_path, "2000_000003", mask=block_mask(class_id=2), aug_mask=True)
    # bare: an image and nothing else.
    write_item(tmp_path, "2000_000004")
    write_split(tmp_path, "train", ["2000_000001", "", "  2000_000002  ", "2000_000003", "2000_000004"])
    return VocIndex(tmp_path)


def test_split_skips_blanks_and_strips(voc: VocIndex) -> None:
    assert read_split(voc.root, "train") == ["2000_000001", "2000_000002", "2000_000003", "2000_000004"]


def test_load_image_rgb_uint8(voc: VocIndex) -> None:
    pixels = voc.load_image("2000_000001")
    assert pixels.dtype == np.uint8 and pixels.shape == (24, 32, 3)
    # JPEG is lossy, but the decoded image is close to what was written.
    assert np.abs(pixels.astype(int) - image().astype(int)).mean() < 5


def test_labels_from_xml_take_precedence(voc: VocIndex) -> None:
    labels, source = voc.image_labels_and_source("2000_000001")
    assert _classes(labels) == {8, 12}
    assert labels.dtype == np.float32 and labels.shape == (20,)
    assert source == str(voc.annotation_path("2000_000001"))


def test_labels_fall_back_to_mask(voc: VocIndex) -> None:
    labels, source = voc.image_labels_and_source("2000_000002")
    assert _classes(labels) == {3}  # 0 and 255 are not classes
    assert source == str(voc.root / "SegmentationClassAug" / "2000_000002.png")


def test_palette_mask_read_as_raw_indices(voc: VocIndex) -> None:
    path = voc.mask_path("2000_000003")
    assert path == voc.root / "SegmentationClass" / "2000_000003.png"  # preferred over the Aug mask
    assert Image.open(path).mode == "P"
    mask = voc.load_mask("2000_000003")
    assert mask.dtype == np.uint8 and mask.shape == (24, 32)
    np.testing.assert_array_equal(mask, block_mask(class_id=15))
    assert set(np.unique(mask).tolist()) == {0, 15, IGNORE_INDEX}


def test_grayscale_aug_mask_read_as_is(voc: VocIndex) -> None:
    assert voc.mask_path("2000_000002") == voc.root / "SegmentationClassAug" / "2000_000002.png"
    np.testing.assert_array_equal(voc.load_mask("2000_000002"), block_mask(class_id=3))


def test_no_mask_gives_none(voc: VocIndex) -> None:
    assert voc.mask_path("2000_000004") is None
    assert voc.load_mask("2000_000004") is None


def test_no_label_source_lists_where_it_looked(voc: VocIndex) -> None:
    with pytest.raises(DataError, match="no label source for id 2000_000004") as info:
        voc.image_labels("2000_000004")
    message = str(info.value)
    assert str(voc.annotation_path("2000_000004")) in message
    for candidate in voc.mask_candidates("2000_000004"):
        assert str(candidate) in message


def test_unknown_class_in_xml_names_file_and_name(voc: VocIndex) -> None:
    path = voc.annotation_path("2000_000001")
    path.write_text(path.read_text().replace("<name>dog</name>", "<name>unicorn</name>"))
    with pytest.raises(DataError, match="unknown class name 'unicorn'") as info:
        voc.image_labels("2000_000001")
    assert str(path) in str(info.value)


def test_bad_xml_names_file(voc: VocIndex) -> None:
    path = voc.annotation_path("2000_000001")
    path.write_text("<annotation><object>")
    with pytest.raises(DataError, match="cannot parse XML") as info:
        voc.image_labels("2000_000001")
    assert str(path) in str(info.value)


def test_cls_labels_dict_is_the_only_source(voc: VocIndex) -> None:
    vector = np.zeros(20, dtype=np.float32)
    vector[[4, 6]] = 1
    index = VocIndex(voc.root, {"2000_000001": vector})
    labels = index.image_labels("2000_000001")
    assert _classes(labels) == {5, 7}  # not the XML's {8, 12}
    labels[:] = 0  # callers get a copy, the dict stays intact
    assert _classes(index.image_labels("2000_000001")) == {5, 7}


# ------------------------------------------------------------ split lists a user may bring


def test_split_with_a_byte_order_mark_reads_the_first_id_whole(tmp_path: Path) -> None:
    path = tmp_path / "ImageSets" / "Segmentation" / "train.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes("\ufeff2007_000032\r\n2007_000039\r\n".encode())
    assert read_split(tmp_path, "train") == ["2007_000032", "2007_000039"]


def test_split_that_is_not_utf8_names_the_file_and_the_byte(tmp_path: Path) -> None:
    path = tmp_path / "ImageSets" / "Segmentation" / "train.txt"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"2007_000032\n2007_0\xe90039\n")
    with pytest.raises(DataError, match=rf"^{path}: not UTF-8 text \(byte 0xe9 at offset 18\)$"):
        read_split(tmp_path, "train")


def test_empty_split_is_an_error(tmp_path: Path) -> None:
    write_split(tmp_path, "train", ["", "  "])
    with pytest.raises(DataError, match=r"train\.txt: the split lists no ids"):
        read_split(tmp_path, "train")


def test_an_id_listed_twice_is_refused_unless_validation_asks(tmp_path: Path) -> None:
    write_split(tmp_path, "train", ["2000_000001", "2000_000002", "2000_000001"])
    with pytest.raises(DataError, match=r"train\.txt: 1 ids listed more than once, e\.g\. \['2000_000001'\]"):
        read_split(tmp_path, "train")
    assert read_split(tmp_path, "train", allow_duplicates=True) == ["2000_000001", "2000_000002", "2000_000001"]


# The colours of the VOC devkit's colour map (VOClabelcolormap.m) as published for the 21 classes, in class order,
# and the 'void' colour of index 255: written out here, not computed.
DEVKIT_COLOURS = [
    (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
    (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
    (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128),
]  # fmt: skip


def test_voc_palette_is_the_devkits_colour_map():
    palette = voc_palette()
    assert len(palette) == 768
    assert [tuple(palette[3 * i : 3 * i + 3]) for i in range(21)] == DEVKIT_COLOURS
    assert tuple(palette[3 * 255 :]) == (224, 224, 192)
