"""The training callbacks of every run (conf/callbacks/default.yaml lists them): the final validation,
the RNG state in checkpoints, last.ckpt every N steps, the NaN guard, the progress bar."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint, TQDMProgressBar

from attnlab.checks import require_int
from attnlab.errors import AttnlabError


def reached_max_steps(trainer: L.Trainer) -> bool:
    """Whether the step just taken is the last: ``trainer.max_steps`` (-1: no limit) is reached."""
    return 0 < trainer.max_steps <= trainer.global_step


class ValidateAtEnd(L.Callback):
    """Validate (and so checkpoint) after the last step, wherever val_check_interval falls.

    Lightning validates every ``val_check_interval`` steps; when ``max_steps`` is not a multiple
    of it the final weights would go unmeasured. Asking the trainer to stop on the last step
    makes Lightning run validation there, so the final val figures describe the final model.
    """

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        if reached_max_steps(trainer):
            trainer.should_stop = True


class ProgressBar(TQDMProgressBar):
    """TQDM bar without the meaningless ``v_num`` (runs are told apart by their folders)."""

    def get_metrics(self, trainer, pl_module):
        metrics = super().get_metrics(trainer, pl_module)
        metrics.pop("v_num", None)
        return metrics


class RNGState(L.Callback):
    """Put the random-number generators in every checkpoint; restore them when a run resumes.

    Lightning restores weights, optimizer, LR schedule and loop counters, not the RNGs: a resumed
    run would draw other dropout masks than the uninterrupted one. The states are those after the
    last training step before the save (the data loaders draw from their own generators, and
    validation draws nothing), and they are put back just before the first resumed step.
    """

    def __init__(self) -> None:
        self._restore: dict[str, Any] | None = None

    def state_dict(self) -> dict[str, Any]:
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        return {
            "torch": torch.get_rng_state(),  # (5056,) uint8
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
            "numpy": [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss],  # weights_only-safe
            "python": random.getstate(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restore = state_dict  # applied in on_train_start, after everything else has loaded

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state, self._restore = self._restore, None
        if state is None:
            return
        torch.set_rng_state(state["torch"])
        if state["cuda"] and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        version, internal, gauss_next = state["python"]
        random.setstate((version, tuple(internal), gauss_next))


class LastCheckpoint(Checkpoint):
    """``<dirpath>/<filename>.ckpt``: the latest training state, to resume from after a crash.

    Written every ``every_n_train_steps`` optimizer steps (0: not on that account) and after every
    validation, so a crash costs at most that many steps. (Lightning's ModelCheckpoint saves on
    one of these triggers, not both.) The write is atomic (:class:`attnlab.training.safe_io.SafeCheckpointIO`).
    """

    def __init__(self, dirpath: str, filename: str = "last", every_n_train_steps: int = 0):
        require_int(
            every_n_train_steps, "callbacks.last_checkpoint.every_n_train_steps (0: only at validation)", minimum=0
        )
        self.path = Path(dirpath) / f"{filename}.ckpt"
        self.every_n_train_steps = every_n_train_steps
        self._saved_step: int | None = None

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        step, n = trainer.global_step, self.every_n_train_steps
        if n and step % n == 0 and step != self._saved_step:  # once per step, not per accumulated batch
            self.save(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module) -> None:
        if not trainer.sanity_checking:  # again if saved this step: it now holds the validation's results
            self.save(trainer)

    def save(self, trainer: L.Trainer) -> None:
        trainer.save_checkpoint(self.path, weights_only=False)  # the whole training state
        self._saved_step = trainer.global_step


class TrainingDiverged(AttnlabError):
    """The training loss became NaN or infinite."""


class NonFiniteLossGuard(L.Callback):
    """Stop the run when the training loss becomes NaN or infinite, before that state is saved.

    Each step adds to a flag kept on the device (no host sync per step); the flag is read every
    ``trainer.log_every_n_steps`` steps, when Lightning syncs to log anyway, and before every
    checkpoint is written, so no checkpoint ever holds a diverged model. The error names the
    first bad step (TensorBoard's step axis) and the last good checkpoint to resume from.
    """

    def __init__(self) -> None:
        self._first_bad: torch.Tensor | None = None  # () int64 on the device: first bad batch, or -1
        self._batches: torch.Tensor | None = None  # () int64 on the device: batches seen
        self._start_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start_step = trainer.global_step  # 0, or the step a resumed run starts from
        self._first_bad = torch.full((), -1, dtype=torch.long, device=pl_module.device)
        self._batches = torch.zeros((), dtype=torch.long, device=pl_module.device)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        if loss is None or self._first_bad is None:
            return
        bad = ~torch.isfinite(loss.detach()).all()  # () bool, on the device
        self._first_bad = torch.where(bad & (self._first_bad < 0), self._batches, self._first_bad)
        self._batches += 1
        if trainer.global_step % max(1, trainer.log_every_n_steps) == 0:
            self.check(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module, checkpoint: dict[str, Any]) -> None:
        self.check(trainer)  # raising here leaves the previous file in place

    def check(self, trainer: L.Trainer) -> None:
        """Raise :class:`TrainingDiverged` if any step so far had a non-finite loss (a host sync)."""
        if self._first_bad is None:
            return
        first = int(self._first_bad)
        if not trainer.strategy.reduce_boolean_decision(first >= 0, all=False):
            return
        step = self._start_step + max(first, 0) // trainer.accumulate_grad_batches
        raise TrainingDiverged(
            f"train/loss became NaN or infinite at step {step}; {_last_good_checkpoint(trainer)}: resume from it "
            f"with a lower optim.lr, more optim.warmup_steps or precision 32-true "
            f"(python train.py resume=<run folder> optim.lr=...)"
        )


def _last_good_checkpoint(trainer: L.Trainer) -> str:
    candidates = []
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, LastCheckpoint):
            candidates.append(cb.path)
        elif isinstance(cb, ModelCheckpoint):
            candidates += [Path(p) for p in (cb.last_model_path, cb.best_model_path) if p]
    existing = [p for p in candidates if p.is_file()]
    if not existing:
        return "no checkpoint was saved before it"
    return f"the last good checkpoint is {max(existing, key=lambda p: p.stat().st_mtime)}"
