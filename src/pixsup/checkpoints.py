"""Every torch file the pipeline writes and reads, with clear errors for bad files.

Two kinds:

- **Trained networks** ``{"format": "pixsup.<network>/<version>", "model": state dict, ...}``:
  ``pixsup.cam_net/1`` (also ``backbone``, ``num_classes``, ``proj_dim``, ``variant``, ``params``,
  ``support``), ``pixsup.irn/1`` and ``pixsup.segnet/1`` (also ``params``). They load with
  ``weights_only`` (no code can run from them).
- **Resume checkpoints** ``<out>.resume.pt``, written by :func:`pixsup.engine.fit` after every
  epoch: identity (params, inputs, data), epoch, loss rows, RNG states, model, optimiser,
  scheduler and what the training adds (a SupportNet, a prototype memory).

Every file loads with ``weights_only``: tensors and plain types, so no code can run from a
planted file. No file with NaN or infinite weights is written or accepted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .errors import CheckpointError
from .files import save_torch
from .models import CamNet, create_model

log = logging.getLogger(__name__)

CAM_NET_FORMAT = "pixsup.cam_net/1"


def read_checkpoint(path: str | os.PathLike, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load a checkpoint dict with ``weights_only`` (tensors and plain types: no code can run from a
    file), checking the ``required`` keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"{path}: refused, it holds objects other than tensors and plain types (no code runs from a checkpoint)"
        ) from None
    except Exception as exc:  # truncated zip, torn writes, ...
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise CheckpointError(
            f"{path}: corrupt or unreadable checkpoint ({type(exc).__name__}: {first_line})"
        ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: not a pixsup checkpoint (got {type(state).__name__})")
    missing = [key for key in required if key not in state]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks {missing}")
    return state


# ------------------------------------------------------------------ trained networks


def nonfinite_tensors(state: dict[str, Any]) -> list[str]:
    """The names of the floating-point tensors of a state dict holding NaN or infinity."""
    return [
        key
        for key, value in state.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not bool(torch.isfinite(value).all())
    ]


def save_trained(path: str | os.PathLike, file_format: str, model: nn.Module, **fields: Any) -> None:
    """A trained network's file: its format, ``fields`` (what rebuilds it) and its weights on the CPU.

    Weights holding NaN or infinity are never written: a CheckpointError names them.
    """
    weights = {key: value.detach().cpu() for key, value in model.state_dict().items()}
    broken = nonfinite_tensors(weights)
    if broken:
        raise CheckpointError(
            f"{path}: not written, {len(broken)} of {len(weights)} weight tensors hold NaN or "
            f"infinity (first: {broken[0]}): training diverged; lower the learning rate"
        )
    save_torch(path, {"format": file_format, **fields, "model": weights})


def read_trained(path: str | os.PathLike, file_format: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """A file written by :func:`save_trained`, its format and ``required`` fields checked."""
    state = read_checkpoint(path, required=("format", "model", *required))
    if state["format"] != file_format:
        raise CheckpointError(f"{path}: format {state['format']!r}, expected {file_format!r}")
    broken = nonfinite_tensors(state["model"])
    if broken:
        raise CheckpointError(
            f"{path}: {len(broken)} weight tensors hold NaN or infinity (first: {broken[0]}): "
            "the network is unusable; train it again"
        )
    return state


def load_weights(path: str | os.PathLike, model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Load ``state["model"]`` into ``model`` (in eval mode); a mismatch is a CheckpointError naming the file."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the network of its params ({exc})") from None
    return model.eval()


def save_cam_net(path: str | os.PathLike, model: CamNet, backbone: str, proj_dim: int, extra: dict[str, Any]) -> None:
    """Final weights of a trained CAM network, with what is needed to rebuild it."""
    save_trained(
        path,
        CAM_NET_FORMAT,
        model,
        backbone=backbone,
        num_classes=model.cam_head.out_channels,
        proj_dim=proj_dim,
        **extra,
    )


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a network's weights (names and bytes, in name order): the same for the same weights,
    whichever file they were read from (torch.save gives every file of the same weights other bytes)."""
    digest = hashlib.sha256()
    for key, value in sorted(model.state_dict().items()):
        digest.update(key.encode())
        digest.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def load_cam_net(path: str | os.PathLike) -> tuple[CamNet, dict[str, Any]]:
    """Rebuild a CAM network from :func:`save_cam_net`'s file (random init, then the stored weights)."""
    state = read_trained(path, CAM_NET_FORMAT, required=("backbone", "proj_dim", "num_classes"))
    model = create_model(
        state["backbone"], num_classes=state["num_classes"], proj_dim=state["proj_dim"], pretrained="none"
    )
    return load_weights(path, model, state), state


def load_cam_backbone(cam_checkpoint: str | os.PathLike | None, backbone: str, section: str) -> nn.Module:
    """The backbone of a trained CAM network, where ``<section>.pretrained`` is ``cam``; it must be the
    ``<section>.backbone`` the params name."""
    if cam_checkpoint is None:
        raise ValueError(f"{section}.pretrained: cam needs the CAM network checkpoint (--cam-model)")
    cam_net, state = load_cam_net(cam_checkpoint)
    if state["backbone"] != backbone:
        raise CheckpointError(
            f"{cam_checkpoint}: backbone '{state['backbone']}' differs from {section}.backbone '{backbone}'"
        )
    return cam_net.backbone


# ------------------------------------------------------------------ resume checkpoints


def resume_path(out: str | os.PathLike) -> Path:
    """``<out>.resume.pt``: where a training to ``out`` keeps its state between epochs."""
    out = Path(out)
    return out.with_name(out.name + ".resume.pt")


def rng_state() -> dict[str, Any]:
    """Python's, numpy's and torch's RNG states as tensors and plain types (a resume checkpoint loads with
    ``weights_only``)."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_resume(
    out: str | os.PathLike,
    identity: dict[str, Any],
    epoch: int,
    rows: list[dict[str, float]],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    **extra: Any,
) -> None:
    """Write ``<out>.resume.pt`` (atomically) after ``epoch`` epochs."""
    save_torch(
        resume_path(out),
        {
            "identity": identity,
            "epoch": epoch,
            "rows": rows,
            "rng": rng_state(),
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            **extra,
        },
    )


def load_resume(
    out: str | os.PathLike, identity: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any
) -> tuple[int, list[dict[str, float]], dict]:
    """Restore ``<out>.resume.pt`` if it exists; returns (epochs done, loss rows, the whole state).

    The file loads with ``weights_only``; one that is corrupt, holds anything but tensors and
    plain types, or was written for another ``identity`` (params, variant, data) is a
    CheckpointError that says to delete it.
    """
    resume = resume_path(out)
    if not resume.exists():
        return 0, [], {}
    try:
        state = read_checkpoint(resume, required=("identity", "epoch", "model", "optimizer", "scheduler", "rng"))
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; delete it to start over") from None
    if state["identity"] != identity:
        changed = sorted(
            key for key in {*identity, *state["identity"]} if identity.get(key) != state["identity"].get(key)
        )
        raise CheckpointError(
            f"{resume}: resume checkpoint was written for different params/inputs "
            f"({', '.join(changed)} differ); delete it to start over"
        )
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    log.info("resuming %s from epoch %d", out, state["epoch"])
    return state["epoch"], state.get("rows", []), state
