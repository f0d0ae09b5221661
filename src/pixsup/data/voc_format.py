"""Facts of the PASCAL VOC 2012 format shared by the reader, the validator and the generator."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

# Index = class id; 0 is background. Foreground ids 1..20 follow VOC's order,
# which is also the order of IRN's cls_labels.npy vectors (index = id - 1).
CLASS_NAMES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
NUM_FG_CLASSES = 20
NUM_CLASSES = 21
IGNORE_INDEX = 255
CLASS_ID = {name: i for i, name in enumerate(CLASS_NAMES)}

# Sub-folders of a VOC2012 root.
JPEG_DIR = "JPEGImages"
MASK_DIR = "SegmentationClass"
MASK_AUG_DIR = "SegmentationClassAug"
ANNOTATION_DIR = "Annotations"
SPLIT_DIR = "ImageSets/Segmentation"


def voc_palette() -> list[int]:
    """The 256-entry VOC colour map (bit-interleaved), 255 -> (224, 224, 192)."""
    palette: list[int] = []
    for index in range(256):
        r = g = b = 0
        value = index
        for shift in range(7, -1, -1):
            r |= ((value >> 0) & 1) << shift
            g |= ((value >> 1) & 1) << shift
            b |= ((value >> 2) & 1) << shift
            value >>= 3
        palette.extend((r, g, b))
    palette[255 * 3 : 256 * 3] = [224, 224, 192]
    return palette


def write_annotation_xml(
    path: str | Path, image_id: str, width: int, height: int, objects: list[tuple[int, tuple[int, int, int, int]]]
) -> str:
    """Render a VOC ``Annotations/<id>.xml``; ``objects`` are (class id, (xmin, ymin, xmax, ymax)).

    Returns the XML text; the caller writes it (atomically).
    """
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "VOC2012"
    ET.SubElement(root, "filename").text = f"{image_id}.jpg"
    size = ET.SubElement(root, "size")
    ET.SubElement(size, "width").text = str(width)
    ET.SubElement(size, "height").text = str(height)
    ET.SubElement(size, "depth").text = "3"
    ET.SubElement(root, "segmented").text = "1"
    for class_id, (xmin, ymin, xmax, ymax) in objects:
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = CLASS_NAMES[class_id]
        ET.SubElement(obj, "pose").text = "Unspecified"
        ET.SubElement(obj, "truncated").text = "0"
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        for key, value in zip(("xmin", "ymin", "xmax", "ymax"), (xmin, ymin, xmax, ymax)):
            ET.SubElement(box, key).text = str(int(value))
    ET.indent(root)
    return ET.tostring(root, encoding="unicode") + "\n"
