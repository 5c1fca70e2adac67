"""Lightning's checkpoint I/O for training: :class:`SafeCheckpointIO`, crash-safe and code-free.

The Trainer of :func:`attnlab.training.task.train` saves every checkpoint through it and loads the
one a run resumes from. Reading a checkpoint without Lightning is :mod:`attnlab.runs.checkpoint`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from attnlab.errors import CheckpointError
from attnlab.runs.atomic import atomic_write, remove_stale_temps
from attnlab.runs.checkpoint import safe_load, tensor_bytes


class SafeCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint I/O, made crash-safe and code-free.

    * save: ``torch.save`` into a temporary file beside the target, ``fsync``, ``os.replace``;
      a temporary file left by a save that was killed is removed by the next save; a save the
      filesystem refuses (full, read-only, ...) is one line naming the file and the bytes it needs;
    * load (``trainer.fit(ckpt_path=...)``): :func:`safe_load`, i.e. ``weights_only=True``
      whatever the caller asks, with the one-line :class:`CheckpointError` for bad files.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options")
        with atomic_write(path, needed=tensor_bytes(checkpoint)) as f:  # a full disk: one line, the old file whole
            torch.save(checkpoint, f)
        remove_stale_temps(path)

    def load_checkpoint(
        self, path: str | Path, map_location: Callable | Any = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        p = Path(path)
        if not p.is_file():
            raise CheckpointError(f"checkpoint {p} does not exist; pass a .ckpt file that a run saved")
        return safe_load(p, map_location=map_location or "cpu")
