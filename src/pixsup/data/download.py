"""Fetch and unpack PASCAL VOC 2012 and the SBD masks (SegmentationClassAug) into a VOC2012 folder.

Archives are streamed to a temporary file beside their final name, checked
against their MD5 while they arrive, and renamed only when complete, so an
interrupted download never passes for a finished one. Unpacking refuses
members that would land outside the target folder. ``file://`` URLs work like
``http(s)://`` ones, which is how a lab's local mirror (and the tests) are served.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..files import atomic_path, write_text
from .voc import DataError
from .voc_format import JPEG_DIR, MASK_AUG_DIR, SPLIT_DIR

log = logging.getLogger("pixsup.download")

_CHUNK = 1 << 20


def archive_name(url: str) -> str:
    """The file name an archive is stored under: the last path segment of the URL, query dropped."""
    name = Path(urllib.parse.urlparse(url).path).name
    if not name:
        raise DataError(f"{url}: the URL does not end in a file name")
    return name


def file_md5(path: str | os.PathLike) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch(url: str, archive_dir: str | os.PathLike, md5: str | None, progress: bool = True) -> tuple[Path, str]:
    """Download ``url`` into ``archive_dir`` unless a copy with the right MD5 is already there.

    Returns:
        The archive's path and its MD5.

    Raises:
        DataError: the URL cannot be read, or the data does not match ``md5``.
    """
    target = Path(archive_dir) / archive_name(url)
    if target.is_file():
        seen = file_md5(target)
        if md5 is None or seen == md5:
            log.info("reusing %s (md5 %s)", target, seen)
            return target, seen
        log.warning("%s: md5 %s, expected %s; downloading again", target, seen, md5)
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, atomic_path(target) as tmp:
            total = response.headers.get("Content-Length")
            with (
                open(tmp, "wb") as out,
                tqdm(
                    total=int(total) if total else None,
                    unit="B",
                    unit_scale=True,
                    desc=target.name,
                    disable=not progress,
                ) as bar,
            ):
                for chunk in iter(lambda: response.read(_CHUNK), b""):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
            seen = digest.hexdigest()
            if md5 is not None and seen != md5:
                raise DataError(f"{url}: md5 {seen} does not match the expected {md5}; nothing was kept")
    except (urllib.error.URLError, OSError) as exc:
        raise DataError(f"{url}: cannot download: {exc}") from None
    log.info("downloaded %s (md5 %s)", target, seen)
    return target, seen


def _checked_members(names: list[str], archive: Path) -> None:
    for name in names:
        parts = Path(name).parts
        if name.startswith(("/", "\\")) or ".." in parts:
            raise DataError(f"{archive}: member {name!r} would be written outside the target folder")


def extract(archive: str | os.PathLike, dest: str | os.PathLike) -> None:
    """Unpack a tar (any compression) or zip archive into ``dest``."""
    archive = Path(archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zipped:
                _checked_members(zipped.namelist(), archive)
                zipped.extractall(dest)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tarred:
                members = tarred.getmembers()
                _checked_members([m.name for m in members], archive)
                bad = [m.name for m in members if not (m.isfile() or m.isdir())]
                if bad:
                    raise DataError(f"{archive}: links or special files are not accepted ({bad[0]!r})")
                tarred.extractall(dest, filter="data")
        else:
            raise DataError(f"{archive}: neither a tar nor a zip archive")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError) as exc:
        raise DataError(f"{archive}: corrupt archive: {exc}") from None


def _find_dir(top: Path, name: str) -> Path:
    """The shallowest folder called ``name`` under ``top`` (archives differ in how they nest)."""
    for path in sorted(top.rglob(name), key=lambda p: len(p.parts)):
        if path.is_dir() and "__MACOSX" not in path.parts:
            return path
    raise DataError(f"no {name}/ folder in the unpacked archive")


def _unpack_into(archive: Path, folder_name: str, target: Path) -> None:
    """Unpack ``archive`` beside ``target`` and move its ``folder_name`` folder to ``target``.

    An archive refused (corrupt, unsafe members, no ``folder_name`` folder) is moved aside to
    ``<archive>.refused``, so that the next run downloads it again instead of reusing it.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".unpack-") as staging:
            extract(archive, staging)
            os.replace(_find_dir(Path(staging), folder_name), target)
    except DataError as exc:
        refused = archive.with_name(archive.name + ".refused")
        os.replace(archive, refused)
        raise DataError(f"{exc}; moved the archive to {refused}, the next run downloads it again") from None


def write_train_aug(root: Path) -> int:
    """Write ``train_aug.txt``: every id with an SBD mask, minus the val ids (10,582 on the real data)."""
    split_dir = root / SPLIT_DIR
    val_file = split_dir / "val.txt"
    if not val_file.is_file():
        raise DataError(f"{val_file}: missing; the VOC 2012 tar provides it")
    val = set(val_file.read_text().split())
    ids = sorted(p.stem for p in (root / MASK_AUG_DIR).glob("*.png") if p.stem not in val)
    if not ids:
        raise DataError(f"{root / MASK_AUG_DIR}: no masks outside val")
    write_text(split_dir / "train_aug.txt", "".join(f"{i}\n" for i in ids))
    return len(ids)


def prepare_voc12(root: str | os.PathLike, cfg: Any, progress: bool = True) -> dict[str, Any]:
    """Make ``root`` a complete VOC2012 folder with SegmentationClassAug and ``train_aug.txt``.

    Parts that are already there (a lab's own VOCdevkit) are kept and not downloaded. The test
    split (images and ``test.txt``) is added from ``cfg.test_url`` when one is given; without it
    the folder has no test split and the workflow skips the test submission. The MD5 of each
    download is recorded, not checked here: ``check_archives`` compares it with the pins before any
    step reads the data, so that pinning an MD5 later reruns that check alone.

    Args:
        root: The VOC2012 folder to fill (``data.root``).
        cfg: ``pixsup.config.Voc12DownloadConfig`` (its URLs and ``archive_dir``).
        progress: Show download progress bars.

    Returns:
        ``{"archives": {name: {"kind", "url", "md5"}}, "downloaded": [...]}``, kind voc | aug | test.
    """
    root = Path(root)
    archives: dict[str, dict[str, str]] = {}

    def download(kind: str, url: str) -> Path:
        path, md5 = fetch(url, cfg.archive_dir, None, progress)
        archives[path.name] = {"kind": kind, "url": url, "md5": md5}
        return path

    if not (root / JPEG_DIR).is_dir():
        _unpack_into(download("voc", cfg.voc_url), "VOC2012", root)
    if not (root / MASK_AUG_DIR).is_dir():
        _unpack_into(download("aug", cfg.aug_url), MASK_AUG_DIR, root / MASK_AUG_DIR)
    if not (root / SPLIT_DIR / "train_aug.txt").is_file():
        log.info("train_aug.txt: %d ids", write_train_aug(root))
    if cfg.test_url and not (root / SPLIT_DIR / "test.txt").is_file():
        log.info("test split: %d images added", _add_test_split(download("test", cfg.test_url), root))
    return {"archives": archives, "downloaded": sorted(archives)}


def check_archives(archives: dict[str, dict[str, str]], pins: dict[str, str | None]) -> dict[str, Any]:
    """Compare the MD5 of each downloaded archive with its pin (``pins[kind]``; None: not pinned).

    Raises:
        DataError: an archive's MD5 differs from its pin, naming the archive and what to remove.
    """
    checked: dict[str, Any] = {}
    for name, archive in archives.items():
        pin = pins.get(archive["kind"])
        if pin is not None and archive["md5"] != pin:
            raise DataError(
                f"{name} (from {archive['url']}): md5 {archive['md5']} does not match the pinned {pin}; "
                "remove the archive and what prepare_data unpacked from it, then run again"
            )
        checked[name] = {**archive, "pinned": pin}
    return {"archives": checked}


def _add_test_split(archive: Path, root: Path) -> int:
    """Add the test tar's images and ``test.txt`` to the VOC2012 folder ``root`` (which holds trainval)."""
    with tempfile.TemporaryDirectory(dir=root.parent, prefix=".unpack-") as staging:
        try:
            extract(archive, staging)
            unpacked = _find_dir(Path(staging), "VOC2012")
        except DataError as exc:
            refused = archive.with_name(archive.name + ".refused")
            os.replace(archive, refused)
            raise DataError(f"{exc}; moved the archive to {refused}, the next run downloads it again") from None
        split = unpacked / SPLIT_DIR / "test.txt"
        if not split.is_file():
            raise DataError(f"{archive}: holds no {SPLIT_DIR}/test.txt; is it the VOC 2012 test tar?")
        images = sorted((unpacked / JPEG_DIR).glob("*.jpg"))
        for image in images:
            target = root / JPEG_DIR / image.name
            if not target.exists():
                os.replace(image, target)
        os.replace(split, root / SPLIT_DIR / "test.txt")  # last: the split appears once its images are there
    return len(images)
