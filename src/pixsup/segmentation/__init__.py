"""Segmentation (workflow/rules/seg.smk): DeepLab-v2 training on pseudo masks, and prediction."""
