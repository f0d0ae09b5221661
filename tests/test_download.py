"""prepare_voc12 against a local file:// mirror of the VOC 2012 tar and SegmentationClassAug.zip."""

from __future__ import annotations

import tarfile
from pathlib import Path

import pytest

from pixsup.config import Voc12DownloadConfig
from pixsup.data.download import archive_name, check_archives, extract, fetch, prepare_voc12
from pixsup.data.validate import validate_split
from pixsup.data.voc import DataError, VocIndex, read_split

from voc_mirror import EXTRA, TRAIN, add_member, build_mirror, md5


def _config(mirror: dict[str, Path], archive_dir: Path, **overrides) -> Voc12DownloadConfig:
    values = {
        "voc_url": mirror["voc"].as_uri(),
        "voc_md5": md5(mirror["voc"]),
        "aug_url": mirror["aug"].as_uri(),
        "aug_md5": md5(mirror["aug"]),
        "archive_dir": str(archive_dir),
    }
    return Voc12DownloadConfig(**{**values, **overrides})


def test_prepare_voc12_from_a_file_mirror(tmp_path):
    mirror = build_mirror(tmp_path / "mirror")
    root = tmp_path / "data" / "VOC2012"
    result = prepare_voc12(root, _config(mirror, tmp_path / "archives"), progress=False)
    assert result["downloaded"] == ["SegmentationClassAug.zip", "VOCtrainval_11-May-2012.tar"]
    assert result["archives"]["VOCtrainval_11-May-2012.tar"]["md5"] == md5(mirror["voc"])
    # train_aug = every SBD id except val.
    assert read_split(root, "train_aug") == sorted(TRAIN + EXTRA)
    assert validate_split(VocIndex(root), "train_aug", require_mask=True, progress=False) == []
    assert validate_split(VocIndex(root), "train", require_mask=True, progress=False) == []
    assert not list(root.parent.glob(".unpack-*"))
    # The archives are kept; a second call downloads nothing.
    assert prepare_voc12(root, _config(mirror, tmp_path / "archives"), progress=False)["downloaded"] == []


def test_existing_vocdevkit_is_used_without_downloading(tmp_path):
    mirror = build_mirror(tmp_path / "mirror")
    root = tmp_path / "VOC2012"
    prepare_voc12(root, _config(mirror, tmp_path / "archives"), progress=False)
    unreachable = _config(
        mirror, tmp_path / "other", voc_url=(tmp_path / "gone.tar").as_uri(), aug_url=(tmp_path / "gone.zip").as_uri()
    )
    assert prepare_voc12(root, unreachable, progress=False)["downloaded"] == []


def test_checksum_mismatch_keeps_nothing(tmp_path):
    mirror = build_mirror(tmp_path / "mirror")
    archives = tmp_path / "archives"
    with pytest.raises(DataError, match=r"md5 [0-9a-f]{32} does not match the expected 0{32}"):
        fetch(mirror["voc"].as_uri(), archives, "0" * 32, progress=False)
    assert list(archives.iterdir()) == []


def test_unreachable_source_names_the_url(tmp_path):
    url = (tmp_path / "missing.tar").as_uri()
    with pytest.raises(DataError, match=f"{url}: cannot download"):
        fetch(url, tmp_path / "archives", None, progress=False)


def test_corrupt_and_hostile_archives_are_refused(tmp_path):
    broken = tmp_path / "broken.tar"
    broken.write_bytes(b"\0" * 100 + b"garbage")
    with pytest.raises(DataError, match="neither a tar nor a zip"):
        extract(broken, tmp_path / "out")
    hostile = tmp_path / "hostile.tar"
    with tarfile.open(hostile, "w") as tar:
        add_member(tar, "../escape.txt", b"x")
    with pytest.raises(DataError, match="outside the target folder"):
        extract(hostile, tmp_path / "out")
    assert not (tmp_path / "escape.txt").exists()


def test_archive_names_drop_the_query():
    assert archive_name("https://www.dropbox.com/s/x/SegmentationClassAug.zip?dl=1") == "SegmentationClassAug.zip"
    with pytest.raises(DataError, match="does not end in a file name"):
        archive_name("https://example.org/")


def test_a_refused_archive_is_moved_aside_and_fetched_again(tmp_path):
    mirror = build_mirror(tmp_path / "mirror")
    good_aug = mirror["aug"].read_bytes()
    hostile = tmp_path / "hostile.tar"
    with tarfile.open(hostile, "w") as tar:
        add_member(tar, "../escape.txt", b"x")
    mirror["aug"].write_bytes(hostile.read_bytes())  # the mirror serves a hostile archive once
    archives, root = tmp_path / "archives", tmp_path / "data" / "VOC2012"
    cfg = _config(mirror, archives, aug_md5=None)  # no MD5 pinned: only unpacking can refuse it
    with pytest.raises(DataError, match=r"outside the target folder.*moved the archive to .*\.refused"):
        prepare_voc12(root, cfg, progress=False)
    assert sorted(p.name for p in archives.iterdir()) == ["SegmentationClassAug.zip.refused", mirror["voc"].name]
    mirror["aug"].write_bytes(good_aug)
    result = prepare_voc12(root, cfg, progress=False)
    assert result["downloaded"] == ["SegmentationClassAug.zip"]
    assert not (tmp_path / "escape.txt").exists() and not (tmp_path / "data" / "escape.txt").exists()


def test_the_test_tar_adds_the_test_split(tmp_path):
    mirror = build_mirror(tmp_path / "mirror")
    test_tar = tmp_path / "mirror" / "VOC2012test.tar"
    with tarfile.open(test_tar, "w") as tar:
        voc_tar = tarfile.open(mirror["voc"])
        jpeg = voc_tar.extractfile(f"VOCdevkit/VOC2012/JPEGImages/{TRAIN[0]}.jpg").read()
        add_member(tar, "VOCdevkit/VOC2012/JPEGImages/2008_000001.jpg", jpeg)
        add_member(tar, "VOCdevkit/VOC2012/ImageSets/Segmentation/test.txt", b"2008_000001\n")
    root = tmp_path / "data" / "VOC2012"
    prepare_voc12(root, _config(mirror, tmp_path / "archives"), progress=False)
    assert not (root / "ImageSets" / "Segmentation" / "test.txt").exists()  # trainval alone has no test split
    result = prepare_voc12(root, _config(mirror, tmp_path / "archives", test_url=test_tar.as_uri()), progress=False)
    assert result["downloaded"] == ["VOC2012test.tar"]
    assert read_split(root, "test") == ["2008_000001"]
    assert VocIndex(root).load_image("2008_000001").shape[2] == 3


def test_a_pinned_md5_is_checked_against_what_was_downloaded(tmp_path):
    mirror = build_mirror(tmp_path / "mirror")
    archives = prepare_voc12(tmp_path / "VOC2012", _config(mirror, tmp_path / "archives"), progress=False)["archives"]
    voc_md5 = md5(mirror["voc"])  # hashlib over the mirror's file, not the step's record
    assert archives["VOCtrainval_11-May-2012.tar"] == {"kind": "voc", "url": mirror["voc"].as_uri(), "md5": voc_md5}
    checked = check_archives(archives, {"voc": voc_md5, "aug": None, "test": None})
    assert checked["archives"]["VOCtrainval_11-May-2012.tar"]["pinned"] == voc_md5
    assert checked["archives"]["SegmentationClassAug.zip"]["pinned"] is None
    with pytest.raises(
        DataError,
        match=r"SegmentationClassAug.zip \(from file://.*\): md5 [0-9a-f]{32} does not match the pinned f{32}",
    ):
        check_archives(archives, {"voc": voc_md5, "aug": "f" * 32})
