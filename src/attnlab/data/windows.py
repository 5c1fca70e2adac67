"""Sliding windows over token ids, as the seed notebooks batch them: ``x = ids[i:i+T]``, ``y = ids[i+1:i+T+1]``.

* :class:`RandomWindows`: training batches at random offsets; batch ``k`` of rank ``r`` depends
  only on ``(seed, r, k)``, so a run is reproducible and can resume mid-stream;
* :class:`SequentialWindows`: validation's fixed, non-overlapping windows over the whole split;
  every token after the first is predicted exactly once (the last, shorter window is padded
  with targets that the loss ignores, :data:`IGNORE_INDEX`).
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from attnlab.errors import DataError

IGNORE_INDEX = -100  # targets with this value carry no loss (padding of the last val window)


def gather_windows(ids: np.ndarray, offsets: np.ndarray, context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows starting at ``offsets``: x = ids[i:i+T], y = ids[i+1:i+T+1], both (B, T) int64."""
    idx = offsets[:, None] + np.arange(context_length + 1)  # (B, T+1)
    windows = torch.from_numpy(ids[idx].astype(np.int64))  # (B, T+1)
    return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)


def require_one_window(ids: np.ndarray, context_length: int) -> None:
    if len(ids) < context_length + 1:
        raise DataError(f"need at least {context_length + 1} tokens for one window, got {len(ids)}")


class RandomWindows(IterableDataset):
    """Batches of windows at random offsets; batch ``k`` is a pure function of ``(seed, rank, k)``."""

    def __init__(
        self,
        ids: np.ndarray,
        context_length: int,
        batch_size: int,
        seed: int,
        num_batches: int | None = None,
        start: int = 0,
        rank: int = 0,
    ):
        require_one_window(ids, context_length)
        self.ids, self.T, self.B = ids, context_length, batch_size
        self.seed, self.rank = seed, rank
        self.num_batches, self.start = num_batches, start
        self.high = len(ids) - context_length  # offsets 0..high-1 keep y inside the data

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.rank, k))
        offsets = rng.integers(0, self.high, size=self.B)  # (B,)
        return gather_windows(self.ids, offsets, self.T)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        k = self.start
        while self.num_batches is None or k < self.num_batches:
            yield self.batch(k)
            k += 1

    def __len__(self) -> int:
        """The run's batches, ``num_batches``, also when iteration resumes at ``start``: Lightning
        restores its batch index on resume and ends the epoch at this length, so a shorter one
        would start a second pass over the data before ``max_steps``."""
        if self.num_batches is None:
            raise TypeError("an unbounded RandomWindows has no length")
        return self.num_batches


class SequentialWindows(Dataset):
    """Non-overlapping windows covering ``ids``; the last one is padded (targets ``IGNORE_INDEX``)."""

    def __init__(self, ids: np.ndarray, context_length: int):
        require_one_window(ids, context_length)
        self.ids, self.T = ids, context_length
        self.n = -(-(len(ids) - 1) // context_length)  # ceil((N-1)/T): every target once

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.T
        chunk = torch.from_numpy(self.ids[start : start + self.T + 1].astype(np.int64))  # (<=T+1,)
        x = torch.zeros(self.T, dtype=torch.long)  # (T,)
        y = torch.full((self.T,), IGNORE_INDEX, dtype=torch.long)  # (T,)
        x[: len(chunk) - 1] = chunk[:-1]
        y[: len(chunk) - 1] = chunk[1:]
        return x, y
