"""Locating and loading ImageNet weights without network access."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from ..errors import WeightsNotFoundError


def torch_cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def resolve_weights(
    backbone: str, pretrained: str, cache_file: str | None, how_to_get: str, directory: Path | None = None
) -> Path | None:
    """Return the weights path to load, or None for random initialisation.

    Args:
        backbone: name, for messages.
        pretrained: ``auto``, ``none`` or a path.
        cache_file: file name looked up for ``auto``; None when the backbone has no
            standard weights (then ``auto`` means random init).
        how_to_get: one sentence telling the user how to obtain the file.
        directory: where ``auto`` looks for ``cache_file``; default the torch cache (ImageNet files).
    """
    if pretrained == "none":
        return None
    if pretrained == "auto":
        if cache_file is None:
            return None
        path = (directory if directory is not None else torch_cache_dir()) / cache_file
        if not path.is_file():
            raise WeightsNotFoundError(
                f"pretrained weights for '{backbone}' not found at {path}. {how_to_get} "
                f"Put the file there (or set cam_train.pretrained to its path), or set "
                f"cam_train.pretrained: none to train from random initialisation."
            )
        return path
    path = Path(os.path.expanduser(pretrained))
    if not path.is_file():
        raise WeightsNotFoundError(f"weights file for '{backbone}' not found: {path}. {how_to_get}")
    return path


def load_state(module: nn.Module, path: Path, ignore_prefixes: tuple[str, ...] = ()) -> None:
    """Load a state dict strictly (except keys under ``ignore_prefixes``), naming what does not fit."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for a bad file
        raise ValueError(f"{path}: cannot read weights: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith(ignore_prefixes)}
    result = module.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ValueError(
            f"{path}: weights do not fit the network: missing {result.missing_keys[:8]}"
            f"{'...' if len(result.missing_keys) > 8 else ''}, unexpected {result.unexpected_keys[:8]}"
            f"{'...' if len(result.unexpected_keys) > 8 else ''}"
        )


def freeze(module: nn.Module) -> None:
    for param in module.parameters():
        param.requires_grad_(False)


class FrozenBatchNormBackbone(nn.Module):
    """Base of backbones whose BatchNorm layers keep their ImageNet statistics and affine parameters.
    IRN's ``FixedBatchNorm`` keeps the statistics too (small WSSS batches would only corrupt them), but its
    trained stages still update the affine weight and bias; here those stay fixed as well."""

    def _batchnorms(self) -> list[nn.Module]:
        return [m for m in self.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]

    def freeze_batchnorm(self) -> None:
        for bn in self._batchnorms():
            freeze(bn)

    def train(self, mode: bool = True) -> FrozenBatchNormBackbone:
        super().train(mode)
        for bn in self._batchnorms():
            bn.eval()
        return self
