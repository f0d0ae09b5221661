"""The device a step runs on, and the precision its forward passes use there."""

from __future__ import annotations

import contextlib
from typing import Any

import torch


def resolve_device(device: str) -> torch.device:
    """``auto``: CUDA when there is one, else the CPU; anything else as torch spells it (``cuda:1``)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_for(device: torch.device) -> contextlib.AbstractContextManager[Any]:
    """bf16 autocast on CUDA, nothing on the CPU (bf16 is emulated, and slow, on CPUs without bf16 units)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)
