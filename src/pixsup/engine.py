"""The one training loop of the pipeline: CAM networks, IRN's boundary branch and DeepLab all train here.

A training is a :class:`TrainingTask`: the network, its data and its loss, which
is all that differs between them. :func:`fit` does the rest, the way torchvision's
reference scripts do it (a plain :func:`train_one_epoch` and a loop around it):

- seeds (:func:`seed_everything`), and batches drawn from ``(seed, epoch)``
  (:func:`epoch_loader`), augmentation from ``(seed, epoch, index)`` in the datasets,
  so results do not depend on the number of loader workers;
- SGD over parameter groups with their own learning rates and the poly decay
  (:func:`sgd_poly`);
- bf16 autocast and channels_last on CUDA, nothing on the CPU;
- several processes (DDP, :mod:`pixsup.runtime.distributed`): each rank takes its
  slice of every global batch, rank 0 writes;
- a resume checkpoint ``<out>.resume.pt`` after every epoch, restored when the same
  training is run again (:mod:`pixsup.checkpoints`), and ``stop_after_epoch``;
- the per-iteration loss log ``<out>.losses.csv`` and progress bars.
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from torch import Tensor, nn
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler
from tqdm import tqdm

from .checkpoints import load_resume, resume_path, save_resume
from .errors import NonFiniteLossError
from .files import remove_stale_temporaries, write_text
from .runtime.device import autocast_for, resolve_device
from .runtime.distributed import Ranks, RankSliceSampler, process_group
from .runtime.workers import start_worker

log = logging.getLogger(__name__)

# The columns every loss log starts with; a task's loss terms follow.
STEP_COLUMNS = ("epoch", "iteration", "lr")


class Schedule(Protocol):
    """The values of a training section (``cam_train``, ``pseudo_labels.irn``, ``seg_train``) the engine reads."""

    seed: int
    epochs: int
    num_workers: int
    momentum: float
    weight_decay: float
    poly_power: float
    nonfinite_skips: int


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextlib.contextmanager
def training_ranks(seed: int, device: str, deterministic: bool) -> Iterator[Ranks]:
    """Seeded, with torch's determinism switch set, inside the launcher's process group (if any).

    ``deterministic`` asks torch for deterministic kernels; without it cuDNN picks
    the fastest ones (``cudnn.benchmark``), as torchvision's references do.
    """
    torch.use_deterministic_algorithms(deterministic, warn_only=True)
    torch.backends.cudnn.benchmark = not deterministic
    seed_everything(seed)
    with process_group(resolve_device(device)) as ranks:
        yield ranks


def epoch_loader(
    dataset: Dataset, global_batch: int, seed: int, epoch: int, num_workers: int, ranks: Ranks
) -> DataLoader:
    """This rank's batches of one epoch: its slice of every shuffled global batch (an incomplete last
    batch is dropped).

    The sampler and the loader share one generator seeded with ``seed * 1000 + epoch``, as a
    ``DataLoader(shuffle=True, generator=...)`` does (the loader draws its workers' base seed
    from it before the sampler draws the permutation), so one process gets the very batches of
    such a loader and the ranks of a group split them.
    """
    generator = torch.Generator().manual_seed(seed * 1000 + epoch)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), global_batch, drop_last=True)
    return DataLoader(
        dataset,
        batch_sampler=RankSliceSampler(batches, ranks),
        num_workers=num_workers,
        generator=generator,
        pin_memory=ranks.device.type == "cuda",
        worker_init_fn=start_worker,
    )


def sgd_poly(
    groups: list[dict[str, Any]], momentum: float, weight_decay: float, max_iters: int, power: float
) -> tuple[torch.optim.SGD, torch.optim.lr_scheduler.LambdaLR]:
    """SGD over parameter groups (each with its own ``lr``) and the poly decay ``(1 - it / max) ** power``."""
    optimizer = torch.optim.SGD(groups, lr=groups[0]["lr"], momentum=momentum, weight_decay=weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda it: max(0.0, 1.0 - it / max(max_iters, 1)) ** power)
    return optimizer, scheduler


def _no_state() -> dict[str, Any]:
    return {}


@dataclass
class TrainingTask:
    """What one training is; everything else is :func:`fit`'s.

    Attributes:
        name: what progress bars and logs call it (``support``, ``irn``, ``seg``, ...).
        model: the network trained; the one saved, checkpointed and compared across ranks.
        dataset: yields dicts of tensors (``image`` among them); has ``set_epoch`` and ``identity``.
        batch_size: the global batch; ``batch_key`` names its params key in errors.
        param_groups: the optimiser's parameter groups, each with its ``lr``.
        loss_columns: the terms :attr:`losses` returns and the log records, ``loss`` (the total) first.
        losses: ``(model to call, batch on the device, epoch) -> {term: tensor}``; the model to call
            is :attr:`model` or its DDP wrapper, and each term is this rank's share of the global
            batch's value (:meth:`~pixsup.runtime.distributed.Ranks.share_of_mean`).
        save: writes the final file of :attr:`model` (rank 0 only).
        after_step: run after every optimiser step (an EMA update).
        resume_state / load_resume_state: what the task adds to the resume checkpoint, and its restore.
        same_on_every_rank: modules besides :attr:`model` that must stay identical across ranks.
        unused_parameters: some trainable parameters may get no gradient in an iteration.
    """

    name: str
    model: nn.Module
    dataset: Any
    batch_size: int
    batch_key: str
    param_groups: list[dict[str, Any]]
    loss_columns: tuple[str, ...]
    losses: Callable[[nn.Module, dict[str, Tensor], int], dict[str, Tensor]]
    save: Callable[[Path], None]
    after_step: Callable[[], None] = lambda: None
    resume_state: Callable[[], dict[str, Any]] = _no_state
    load_resume_state: Callable[[dict[str, Any]], None] = lambda state: None
    same_on_every_rank: dict[str, nn.Module] = field(default_factory=dict)
    unused_parameters: bool = False


def _to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    moved = {
        key: value.to(device, non_blocking=True) if isinstance(value, Tensor) else value for key, value in batch.items()
    }
    if device.type == "cuda":
        moved["image"] = moved["image"].contiguous(memory_format=torch.channels_last)
    return moved


def train_one_epoch(
    task: TrainingTask,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loader: DataLoader,
    epoch: int,
    epochs: int,
    ranks: Ranks,
    progress: bool,
    skips_left: int = 0,
) -> list[dict[str, float]]:
    """One pass over ``loader``; returns a loss row per iteration (terms averaged over ranks).

    An iteration whose loss is not finite takes no optimiser step (its row keeps the values);
    past ``skips_left`` such iterations, a NonFiniteLossError stops the training.
    """
    model.train()
    amp = autocast_for(ranks.device)
    rows = []
    bar = tqdm(
        loader, desc=f"{task.name} epoch {epoch + 1}/{epochs}", disable=not progress or not ranks.is_main, leave=False
    )
    for batch in bar:
        batch = _to_device(batch, ranks.device)
        with amp:
            terms = task.losses(model, batch, epoch)
        # The global batch's values, the same on every rank: all ranks stop together on a bad one.
        values = ranks.mean_over_ranks({column: terms[column] for column in task.loss_columns})
        finite = all(math.isfinite(value) for value in values.values())
        where = f"{task.name}: the loss is not finite at epoch {epoch + 1}, iteration {scheduler.last_epoch + 1}"
        terms_text = ", ".join(f"{k} {v:g}" for k, v in values.items())
        if not finite and skips_left == 0:
            raise NonFiniteLossError(
                f"{where} ({terms_text}): training diverged; lower the learning rate (nothing of this epoch was "
                "written)"
            )
        optimizer.zero_grad(set_to_none=True)
        if finite:
            terms["loss"].backward()
            optimizer.step()
            task.after_step()
        else:
            skips_left -= 1
            log.warning("%s (%s): iteration skipped, %d more may be", where, terms_text, skips_left)
        with warnings.catch_warnings():
            # A skipped first iteration steps the schedule before the optimiser ever did: the iteration counts.
            warnings.filterwarnings("ignore", "Detected call of `lr_scheduler.step", UserWarning)
            scheduler.step()
        row = {"epoch": epoch, "iteration": scheduler.last_epoch, "lr": optimizer.param_groups[0]["lr"]}
        row.update(values)
        rows.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}")
    return rows


def loss_log_text(rows: list[dict[str, float]], columns: tuple[str, ...]) -> str:
    """Loss rows as CSV text: ``epoch, iteration, lr`` and the terms in ``columns``."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=STEP_COLUMNS + columns, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def _epoch_means(rows: list[dict[str, float]], epoch: int, columns: tuple[str, ...]) -> dict[str, float]:
    """The mean of each term over the epoch's iterations that took a step (a finite loss)."""
    stepped = [row for row in rows if row["epoch"] == epoch and math.isfinite(row["loss"])]
    return {column: float(np.mean([row[column] for row in stepped])) for column in columns}


def fit(
    task: TrainingTask,
    schedule: Schedule,
    out: str | os.PathLike,
    identity: dict[str, Any],
    ranks: Ranks,
    losses_csv: str | os.PathLike | None = None,
    stop_after_epoch: int | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``task`` for ``schedule.epochs`` epochs; rank 0 writes ``out`` (:attr:`TrainingTask.save`) and the
    loss log ``losses_csv`` (default ``<out>.losses.csv``).

    After every epoch ``<out>.resume.pt`` holds the whole state; when it exists at start and
    was written for the same ``identity`` (with the dataset's own identity added: folder, split,
    ids), training resumes from it and ends with the weights of an uninterrupted run. An iteration
    whose loss is not finite takes no step; past ``schedule.nonfinite_skips`` of them (counted
    over the whole run, resumes included) the training stops with a NonFiniteLossError.
    ``stop_after_epoch`` ends the run after that epoch, leaving only the resume checkpoint.
    Returns a summary: ``finished``, ``epochs_done`` and, when finished, ``iterations``,
    ``processes``, ``seconds_this_run`` and ``final_epoch_losses``.
    """
    out = Path(out)
    losses_csv = Path(losses_csv) if losses_csv else out.with_name(out.name + ".losses.csv")
    ranks.per_rank_batch(task.batch_size, task.batch_key)
    if ranks.is_main and out.parent.is_dir():
        remove_stale_temporaries(out.parent)
    model = task.model.to(ranks.device)
    if ranks.device.type == "cuda":
        model.to(memory_format=torch.channels_last)
    iters_per_epoch = len(task.dataset) // task.batch_size
    optimizer, scheduler = sgd_poly(
        task.param_groups,
        schedule.momentum,
        schedule.weight_decay,
        schedule.epochs * iters_per_epoch,
        schedule.poly_power,
    )
    # What the run trains on belongs to its identity: a resume against other data is refused.
    identity = {**identity, "data": task.dataset.identity()}
    start_epoch, rows, state = load_resume(out, identity, model, optimizer, scheduler)
    task.load_resume_state(state)
    trained = ranks.wrap(model, unused_parameters=task.unused_parameters)
    started = time.perf_counter()
    for epoch in range(start_epoch, schedule.epochs):
        task.dataset.set_epoch(epoch)
        loader = epoch_loader(task.dataset, task.batch_size, schedule.seed, epoch, schedule.num_workers, ranks)
        skipped = sum(not math.isfinite(row["loss"]) for row in rows)
        rows += train_one_epoch(
            task,
            trained,
            optimizer,
            scheduler,
            loader,
            epoch,
            schedule.epochs,
            ranks,
            progress,
            skips_left=schedule.nonfinite_skips - skipped,
        )
        means = _epoch_means(rows, epoch, task.loss_columns)
        log.info(
            "%s epoch %d/%d: %s",
            task.name,
            epoch + 1,
            schedule.epochs,
            " ".join(f"{column} {value:.4f}" for column, value in means.items()),
        )
        for what, module in {f"the {task.name} network": model, **task.same_on_every_rank}.items():
            ranks.check_identical(module, what)
        if ranks.is_main:
            save_resume(out, identity, epoch + 1, rows, model, optimizer, scheduler, **task.resume_state())
            write_text(losses_csv, loss_log_text(rows, task.loss_columns))
        ranks.barrier()
        if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < schedule.epochs:
            log.info("stopping after epoch %d as asked; rerun to resume", epoch + 1)
            return {"finished": False, "epochs_done": epoch + 1}
    if ranks.is_main:
        task.save(out)
        write_text(losses_csv, loss_log_text(rows, task.loss_columns))
        resume_path(out).unlink(missing_ok=True)
    ranks.barrier()
    return {
        "finished": True,
        "epochs_done": schedule.epochs,
        "iterations": len(rows),
        "processes": ranks.world_size,
        "seconds_this_run": round(time.perf_counter() - started, 2),
        "final_epoch_losses": _epoch_means(rows, schedule.epochs - 1, task.loss_columns),
    }
