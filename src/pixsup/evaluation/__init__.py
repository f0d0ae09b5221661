"""Evaluation against ground-truth masks: confusion matrices, seed sweeps and label folders."""
