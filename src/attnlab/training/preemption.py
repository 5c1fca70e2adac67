"""Preemption: a scheduler's notice (SIGTERM, SIGUSR1, SIGUSR2) saves the run and stops it cleanly.

SLURM and cloud schedulers send SIGTERM before they take a machine back (SLURM also sends the
signal a job asks for, ``--signal=USR1@120``, before its time limit; submitit asks for USR2). Left
to Python, the run dies and loses every step since its last checkpoint. With :class:`Preemption`
(``callbacks.preemption``) the signal only sets a flag; at the end of the step in progress the run
saves ``checkpoints/last.ckpt`` (atomically, the same file and state as every other save, so the
resume is step for step), logs one line, asks SLURM to requeue the job when it runs under SLURM
(``requeue: auto``), and stops with :class:`Preempted`: the job records ``status: preempted`` and
the process exits with :data:`PREEMPTED_EXIT_STATUS` (:func:`attnlab.sweeps.job.run_job`).

Under DDP every rank sees the flag (it is reduced across ranks at each step), so all ranks save
and stop at the same step. A requeued job resumes by itself: a sweep job finds its own
``last.ckpt`` (:mod:`attnlab.sweeps.continuation`); a single run resumes with ``resume=<run>``.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
import torch
import torch.distributed as dist

from attnlab.checks import require_choice
from attnlab.errors import ConfigError
from attnlab.runs import layout
from attnlab.system.console import shown_path
from attnlab.training.callbacks import LastCheckpoint

log = logging.getLogger(__name__)

PREEMPTED_EXIT_STATUS = 75  # EX_TEMPFAIL (sysexits.h): a temporary failure, try again later
REQUEUE_CHOICES = ("auto", "never")  # auto: requeue when running under SLURM (SLURM_JOB_ID is set)


class Preempted(Exception):
    """The run was stopped by a scheduler's signal after saving its checkpoint."""


def slurm_job_id() -> str | None:
    """This process's SLURM job (``<array job>_<task>`` for an array task), None outside SLURM."""
    array_job = os.environ.get("SLURM_ARRAY_JOB_ID")
    if array_job is not None and "SLURM_ARRAY_TASK_ID" in os.environ:
        return f"{array_job}_{os.environ['SLURM_ARRAY_TASK_ID']}"
    return os.environ.get("SLURM_JOB_ID")


def requeue_slurm_job(job_id: str) -> bool:
    """``scontrol requeue <job_id>``: SLURM starts the job again once this one ends. True if it agreed."""
    if not re.fullmatch(r"[0-9_]+", job_id):
        log.warning("not requeuing SLURM job %r: not a job id", job_id)
        return False
    try:
        done = subprocess.run(["scontrol", "requeue", job_id], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as err:
        log.warning("could not requeue SLURM job %s (%s); resubmit it to go on", job_id, err)
        return False
    if done.returncode != 0:
        log.warning("scontrol requeue %s failed: %s", job_id, (done.stderr or done.stdout).strip()[:200])
        return False
    log.info("requeued SLURM job %s: it resumes from its checkpoint when it starts again", job_id)
    return True


def signal_numbers(names: Sequence[str]) -> list[signal.Signals]:
    """``["SIGTERM", "SIGUSR1"]`` -> the signals; one line for a name this system lacks."""
    found = []
    for name in names:
        number = getattr(signal, str(name).upper(), None)
        if not isinstance(number, signal.Signals) or number in (signal.SIGKILL, getattr(signal, "SIGSTOP", None)):
            raise ConfigError(
                f"callbacks.preemption.signals: {name!r} is not a signal a run can catch here; "
                "use names such as SIGTERM, SIGUSR1, SIGUSR2"
            )
        found.append(number)
    return found


class Preemption(L.Callback):
    """On one of ``signals``: save ``last.ckpt`` at the end of the step, requeue under SLURM, stop.

    ``signals``: the signal names to catch (by default SIGTERM, SIGUSR1, SIGUSR2).
    ``requeue``: ``auto`` (``scontrol requeue`` under SLURM) or ``never``.
    """

    def __init__(self, signals: Sequence[str] = ("SIGTERM", "SIGUSR1", "SIGUSR2"), requeue: str = "auto"):
        self.signals = signal_numbers(list(signals))
        require_choice(requeue, "callbacks.preemption.requeue", REQUEUE_CHOICES)
        self.requeue = requeue
        self._received: signal.Signals | None = None
        self._previous: dict[signal.Signals, Any] = {}

    # the handler only notes the signal: saving happens between steps, in on_train_batch_end
    def _note(self, signum: int, frame: FrameType | None) -> None:
        self._received = signal.Signals(signum)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._received = None
        if threading.current_thread() is not threading.main_thread():
            log.warning("preemption signals are not caught: training does not run in the main thread")
            return
        for number in self.signals:  # replaces Lightning's own SIGTERM handler for the run
            self._previous[number] = signal.signal(number, self._note)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module, outputs, batch, batch_idx) -> None:
        received = self._received_by_any_rank(trainer, pl_module.device)
        if received is None:
            return
        path = self._save(trainer)
        step = trainer.global_step
        requeued = False
        if self.requeue == "auto" and trainer.is_global_zero and slurm_job_id() is not None:
            requeued = requeue_slurm_job(slurm_job_id())
        raise Preempted(
            f"preempted by {received.name} at step {step}: saved {shown_path(path)}"
            + (" and requeued the SLURM job" if requeued else "")
        )

    def _received_by_any_rank(self, trainer: L.Trainer, device: torch.device) -> signal.Signals | None:
        """The signal this rank got; under DDP, the one any rank got (all ranks stop together),
        asked every ``trainer.log_every_n_steps`` steps, when Lightning syncs the ranks to log anyway."""
        if trainer.world_size > 1 and dist.is_available() and dist.is_initialized():
            if trainer.global_step % max(1, trainer.log_every_n_steps):
                return None
            flag = torch.tensor([int(self._received or 0)], device=device)  # (1,) the signal number, 0: none
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            return signal.Signals(int(flag.item())) if flag.item() else None
        return self._received

    def _save(self, trainer: L.Trainer) -> Path:
        """Save the whole training state where the run's last.ckpt goes (collective under DDP)."""
        last = next((c for c in trainer.callbacks if isinstance(c, LastCheckpoint)), None)
        if last is not None:
            last.save(trainer)
            return last.path
        path = layout.last_checkpoint(Path(trainer.default_root_dir))
        trainer.save_checkpoint(path, weights_only=False)
        return path

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous = {}
