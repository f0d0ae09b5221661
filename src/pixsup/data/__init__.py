"""Datasets in the PASCAL VOC 2012 layout: reader, validation, transforms, synthetic default."""
