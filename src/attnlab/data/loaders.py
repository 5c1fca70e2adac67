"""What both data modules' loaders share (:class:`attnlab.data.datamodule.TextDataModule`, the GPT's
windows; :class:`attnlab.data.seq2seq.Seq2SeqDataModule`, the encoder–decoder's pairs):

* where the training stream starts: batch k of rank r is a pure function of (seed, r, k), so a
  resumed run starts at ``global_step * accumulate_grad_batches`` and draws what the
  uninterrupted one would;
* the loader: ``data.num_workers``, pinned memory on CUDA, and a generator of its own;
* validation under DDP: every item on exactly one process.
"""

from __future__ import annotations

from collections.abc import Sized
from typing import Any

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader

from attnlab.errors import DataError


def training_position(trainer: L.Trainer | None) -> tuple[int | None, int, int]:
    """``(num_batches, start, rank)`` of this process's training stream: the batches the run
    draws in all (``max_steps * accumulate_grad_batches``; None without a step budget), the first
    one to draw now (a resumed run's step), and the process's rank."""
    if trainer is None:
        return None, 0, 0
    num_batches = trainer.max_steps * trainer.accumulate_grad_batches if trainer.max_steps > 0 else None
    start = trainer.global_step * trainer.accumulate_grad_batches  # resume where we were
    return num_batches, start, trainer.global_rank


def loader(dataset: Any, trainer: L.Trainer | None, seed: int, num_workers: int, **options: Any) -> DataLoader:
    """A DataLoader with ``num_workers``, pinned memory on CUDA, and a generator of its own: each
    ``iter(loader)`` draws a seed from it, and without one that draw comes from the global RNG,
    shifting dropout's random numbers at every validation and making a resumed run (which restores
    the global RNG) differ."""
    pin = trainer is not None and trainer.strategy.root_device.type == "cuda"
    generator = torch.Generator().manual_seed(seed)
    return DataLoader(dataset, num_workers=num_workers, pin_memory=pin, generator=generator, **options)


def val_sampler(dataset: Sized, trainer: L.Trainer | None, items: str, fix: str) -> UnrepeatedDistributedSampler | None:
    """Under DDP, items rank, rank+W, rank+2W, ... for each of the W processes: every item on
    exactly one process (Lightning's default DistributedSampler would pad with repeats). Fewer
    items than processes is one line: ``items`` names them, ``fix`` says what to change."""
    if trainer is None or trainer.world_size == 1:
        return None
    if len(dataset) < trainer.world_size:
        raise DataError(
            f"the validation split has {len(dataset)} {items}, fewer than the {trainer.world_size} processes; {fix}"
        )
    return UnrepeatedDistributedSampler(
        dataset, num_replicas=trainer.world_size, rank=trainer.global_rank, shuffle=False
    )
