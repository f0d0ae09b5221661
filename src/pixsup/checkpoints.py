"""Reading and writing CAM-network checkpoints, with clear errors for bad files."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from .io import save_torch
from .models import CamNet, create_model

FORMAT = "pixsup.cam_net/1"


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file."""


def read_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = (), trusted: bool = False
                    ) -> dict[str, Any]:
    """Load a checkpoint dict, checking the ``required`` keys.

    Weights files load with ``weights_only`` (no code can run from them);
    ``trusted`` allows full unpickling, needed for the RNG states of the resume
    checkpoints a run writes for itself.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as exc:  # truncated zip, pickle errors, ...
        raise CheckpointError(f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a pixsup checkpoint (got {type(state).__name__})")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return state


def save_cam_net(path: str | os.PathLike, model: CamNet, backbone: str, proj_dim: int, extra: dict[str, Any]) -> None:
    """Final weights of a trained CAM network, with what is needed to rebuild it."""
    save_torch(path, {
        "format": FORMAT,
        "backbone": backbone,
        "num_classes": model.cam_head.out_channels,
        "proj_dim": proj_dim,
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        **extra,
    })


def load_cam_net(path: str | os.PathLike) -> tuple[CamNet, dict[str, Any]]:
    """Rebuild a CAM network from :func:`save_cam_net`'s file (random init, then the stored weights)."""
    state = read_checkpoint(path, required=("format", "backbone", "model", "proj_dim", "num_classes"))
    if state["format"] != FORMAT:
        raise CheckpointError(f"{path}: format {state['format']!r}, expected {FORMAT!r}")
    model = create_model(state["backbone"], num_classes=state["num_classes"], proj_dim=state["proj_dim"],
                         pretrained="none")
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit backbone '{state['backbone']}': {exc}") from None
    return model, state
