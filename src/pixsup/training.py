"""What every training loop here shares: device, seeds, shuffled batches, the poly schedule and resumable
checkpoints."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler

from .checkpoints import CheckpointError, read_checkpoint
from .distributed import Ranks, RankSliceSampler
from .io import save_torch, write_text

log = logging.getLogger(__name__)


def resolve_device(device: str) -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def resume_path(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".resume.pt")


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def epoch_loader(dataset: Dataset, global_batch: int, seed: int, epoch: int, num_workers: int,
                 ranks: Ranks) -> DataLoader:
    """This rank's batches of one epoch: its slice of every shuffled global batch (an incomplete last
    batch is dropped).

    The sampler and the loader share one generator seeded with ``seed * 1000 + epoch``, as a
    ``DataLoader(shuffle=True, generator=...)`` does (the loader draws its workers' base seed
    from it before the sampler draws the permutation), so one process gets the very batches of
    such a loader and the ranks of a group split them.
    """
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), global_batch, drop_last=True)
    return DataLoader(dataset, batch_sampler=RankSliceSampler(batches, ranks), num_workers=num_workers,
                      generator=generator, pin_memory=ranks.device.type == "cuda")


def sgd_poly(groups: list[dict[str, Any]], momentum: float, weight_decay: float, max_iters: int,
             power: float) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over parameter groups (each with its own ``lr``) and the poly decay ``(1 - it / max) ** power``."""
    optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda it: max(0.0, 1.0 - it / max(max_iters, 1)) ** power)
    return optimizer, scheduler


def load_resume(out: str | os.PathLike, identity: dict[str, Any], model: nn.Module,
                optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[int, list[dict[str, float]], dict]:
    """Restore ``<out>.resume.pt`` if it exists; returns (epochs done, loss rows, the whole state)."""
    resume = resume_path(out)
    if not resume.exists():
        return 0, [], {}
    state = read_checkpoint(resume, required=("identity", "epoch", "model", "optimizer", "scheduler", "rng"),
                            trusted=True)
    if state["identity"] != identity:
        raise CheckpointError(f"{resume}: resume checkpoint was written for different params/inputs; "
                              "delete it to start over")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    set_rng_state(state["rng"])
    log.info("resuming %s from epoch %d", out, state["epoch"])
    return state["epoch"], state.get("rows", []), state


def save_resume(out: str | os.PathLike, identity: dict[str, Any], epoch: int, rows: list[dict[str, float]],
                model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, **extra: Any) -> None:
    """Write ``<out>.resume.pt`` (atomically) after ``epoch`` epochs."""
    save_torch(resume_path(out), {
        "identity": identity, "epoch": epoch, "rows": rows, "rng": rng_state(), "model": model.state_dict(),
        "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), **extra})


def autocast_for(device: torch.device) -> Any:
    """bf16 autocast on CUDA, nothing on the CPU."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return torch.autocast("cpu", enabled=False)


def losses_csv_text(rows: list[dict[str, float]], columns: tuple[str, ...]) -> str:
    """Per-iteration loss rows as CSV text with the given columns."""
    lines = [",".join(columns)] + [",".join(str(row[c]) for c in columns) for row in rows]
    return "\n".join(lines) + "\n"


def finish_training(out: str | os.PathLike, file_format: str, params: dict[str, Any], model: nn.Module,
                    rows: list[dict[str, float]], losses_csv: str | os.PathLike, columns: tuple[str, ...],
                    epochs: int, seconds: float) -> dict[str, Any]:
    """Write the final ``{format, params, model}`` file and the loss CSV, drop the resume checkpoint,
    and return the run's summary."""
    save_torch(out, {"format": file_format, "params": params,
                     "model": {k: v.detach().cpu() for k, v in model.state_dict().items()}})
    write_text(losses_csv, losses_csv_text(rows, columns))
    resume_path(out).unlink(missing_ok=True)
    return training_summary(rows, epochs, seconds)


def training_summary(rows: list[dict[str, float]], epochs: int, seconds: float) -> dict[str, Any]:
    """What :func:`finish_training` returns, for the ranks that leave the writing to rank 0."""
    return {"epochs": epochs, "iterations": len(rows), "seconds_this_run": round(seconds, 2),
            "final_loss": rows[-1]["loss"] if rows else None}


def read_trained(path: str | os.PathLike, file_format: str) -> dict[str, Any]:
    """A file written by :func:`finish_training`, its format checked."""
    state = read_checkpoint(path, required=("format", "params", "model"))
    if state["format"] != file_format:
        raise CheckpointError(f"{path}: format {state['format']!r}, expected {file_format!r}")
    return state


def load_weights(path: str | os.PathLike, model: nn.Module, state: dict[str, Any]) -> nn.Module:
    """Load ``state["model"]`` into ``model``; a mismatch is a CheckpointError naming the file."""
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit the network of its params ({exc})") from None
    return model.eval()
