"""Continuing a sweep that stopped halfway: ``python train.py -m <its overrides> sweep_dir=<its folder>``.

A grid sweep killed halfway (``kill -9``, a crash, Ctrl-C, a preempted job) leaves its folder as
it was: the jobs that finished hold ``metrics.json`` with ``status: ok``, the job that was running
holds its ``checkpoints/last.ckpt``. The same command with ``sweep_dir=<that folder>`` continues it,
job by job (:func:`start_job`, called by :func:`attnlab.sweeps.job.run_job`):

* a job that finished (``ok``) is not run again; the report keeps its figures;
* any other job with a ``last.ckpt`` resumes from it, step for step, as ``resume=<job>`` would
  (a preempted job, the one the kill interrupted, and a failed one: ``sweep_retry_failed=false``
  keeps a failed job as it is instead);
* a job without a usable checkpoint starts again, the events of its earlier attempt removed.

The same rules let a SLURM job that was requeued after a preemption pick up its own folder.
Before any job runs, :func:`check_same_sweep` refuses another sweep definition in that folder
(other values, other fixed overrides, another named sweep), listing the differences: the job
numbers would name other jobs. The command to continue (:func:`continue_command`) is logged when
a sweep starts and when it stops early.

An Optuna study continues through its storage instead (the same command again, no
``sweep_dir``); its trials are not job folders to pick up, see docs/sweeps.md.

No torch or Lightning at import time: Hydra builds the sweep callback for every command.
"""

from __future__ import annotations

import json
import logging
import shlex
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

from attnlab.errors import CheckpointError, ConfigError
from attnlab.runs import layout
from attnlab.runs.resume import CONTINUATION_KEYS, key_of_each
from attnlab.sweeps.plan import grid_jobs, is_optuna, sweeper_overrides
from attnlab.system.console import shown_path
from attnlab.system.distributed import pass_to_ranks

log = logging.getLogger(__name__)

MULTIRUN_RECORD = "multirun.yaml"  # Hydra's record of a sweep, in its folder: the composed config and overrides


def sweep_dir(given: Any, new_sweep_dir: str) -> str:
    """``hydra.sweep.dir`` (the resolver ``${attnlab.sweep_dir:${sweep_dir},<new folder>}``): the
    folder ``sweep_dir=`` names, else a new one."""
    return str(Path(str(given)).expanduser().resolve()) if given not in (None, "") else new_sweep_dir


# --------------------------------------------------------------------------------------------
# The sweep: same definition, and the command that continues it
# --------------------------------------------------------------------------------------------


def _jobs(sweeper: Any, task_overrides: Sequence[str]) -> list[list[str]]:
    """The jobs of a grid sweep, without the keys that only say how to continue it."""
    arguments = [o for key, o in zip(key_of_each(list(task_overrides)), task_overrides) if key not in CONTINUATION_KEYS]
    return grid_jobs(sweeper_overrides(sweeper.get("params"), arguments))


def _values_by_key(jobs: list[list[str]]) -> dict[str, list[str]]:
    """``{"model.num_heads": ["2", "4"], ...}``: each key's values over the jobs, in job order."""
    values: dict[str, list[str]] = {}
    for job in jobs:
        for override in job:
            key, _, value = override.partition("=")
            if value not in values.setdefault(key, []):
                values[key].append(value)
    return values


def sweep_differences(old: list[list[str]], new: list[list[str]]) -> list[str]:
    """``["model.num_heads 2,4 -> 2,8", "seed 3 -> (not set)"]``: where two job lists differ, key by
    key (values over the jobs); the job count when the keys agree but the jobs do not."""
    before, after = _values_by_key(old), _values_by_key(new)
    keys = [*before, *(k for k in after if k not in before)]
    differ = [
        f"{k} {','.join(before.get(k, [])) or '(not set)'} -> {','.join(after.get(k, [])) or '(not set)'}"
        for k in keys
        if before.get(k) != after.get(k)
    ]
    if not differ and old != new:
        differ = [f"{len(old)} jobs -> {len(new)} jobs"]
    return differ


def check_same_sweep(config: DictConfig) -> None:
    """Before a multirun: if its folder already holds a sweep, it must be the same sweep (the same
    jobs in the same order). ``sweep_dir=`` must name a sweep folder. One line otherwise."""
    folder = Path(config.hydra.sweep.dir)
    record = folder / MULTIRUN_RECORD
    given = config.get("sweep_dir")
    if given is not None and not record.is_file():
        raise ConfigError(
            f"sweep_dir={given} holds no sweep (no {MULTIRUN_RECORD}); pass the folder of the sweep to continue "
            "(its log names it), or drop sweep_dir to start a new sweep"
        )
    if not record.is_file():
        return
    if is_optuna(config.hydra.sweeper):
        raise ConfigError(
            f"{shown_path(folder)} is the folder of an earlier call and an Optuna study continues through its "
            "storage: run the same command again without sweep_dir (and without hydra.sweep.dir)"
        )
    saved = OmegaConf.load(record)
    old = _jobs(saved.hydra.sweeper, list(saved.hydra.overrides.task))
    new = _jobs(config.hydra.sweeper, list(config.hydra.overrides.task))
    differences = sweep_differences(old, new)
    if differences:
        raise ConfigError(
            f"{shown_path(folder)} holds another sweep ({'; '.join(differences)}; that sweep -> this command); "
            f"continue it with its own command: {continue_command(folder, _original_command(saved))}, "
            "or drop sweep_dir to start a new sweep"
        )


def _original_command(saved: DictConfig) -> list[str]:
    """The command-line overrides a saved multirun.yaml records (with ``-m``)."""
    return ["-m", *[str(o) for o in saved.hydra.overrides.task]]


def continue_command(folder: Path, argv: Sequence[str] | None = None) -> str:
    """The command that continues the sweep in ``folder``: this one (``argv``, default
    ``sys.argv[1:]``) with ``sweep_dir=<folder>`` in place of any ``sweep_dir=``/``hydra.sweep.dir=``."""
    args = list(sys.argv[1:] if argv is None else argv)
    kept = [a for a in args if a.split("=", 1)[0].lstrip("+~") not in (*CONTINUATION_KEYS, "hydra.sweep.dir")]
    return shlex.join(["python", "train.py", *kept, f"sweep_dir={shown_path(folder)}"])


# --------------------------------------------------------------------------------------------
# Each job: skip it, resume it, or (re)start it
# --------------------------------------------------------------------------------------------


@dataclass
class JobStart:
    """How a job of a sweep starts: ``new`` (its folder holds no earlier attempt), ``skip`` (it
    finished before, or failed and is kept failed), ``resume`` (from its ``last.ckpt``) or
    ``restart`` (an earlier attempt left no usable checkpoint)."""

    how: str
    record: dict[str, Any] | None = None  # the job's metrics.json, if it has one
    step: int | None = None  # the step a resume starts from


def _record(job_dir: Path) -> dict[str, Any] | None:
    path = layout.job_record(job_dir)
    try:
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (OSError, ValueError):
        return None  # half a record: as if none


def _checkpoint_step(checkpoint: Path) -> int | None:
    """The step ``checkpoint`` was saved at, None if it cannot be read."""
    from attnlab.runs.checkpoint import safe_load  # torch: only when a job folder holds a checkpoint

    try:
        return int(safe_load(checkpoint, mmap=True).get("global_step", 0))
    except CheckpointError:
        return None


def plan_job(job_dir: Path, max_steps: int, retry_failed: bool = True) -> JobStart:
    """How the job in ``job_dir`` (a job of a sweep launched before, or a new one) starts."""
    record = _record(job_dir)
    status = (record or {}).get("status")
    if status == "ok" or (status == "failed" and not retry_failed):
        return JobStart("skip", record)
    checkpoint = layout.last_checkpoint(job_dir)
    if checkpoint.is_file():
        step = _checkpoint_step(checkpoint)
        if step is not None and (max_steps < 0 or step < max_steps):
            return JobStart("resume", record, step)
    earlier = record is not None or any(
        (job_dir / name).exists() for name in (layout.TENSORBOARD_DIR, layout.CHECKPOINT_DIR)
    )
    return JobStart("restart" if earlier else "new", record)


def clear_attempt(job_dir: Path) -> None:
    """Remove what an earlier attempt of a job left that a new start would add to: its record,
    checkpoints and TensorBoard events (its train.log and Hydra's records stay)."""
    layout.job_record(job_dir).unlink(missing_ok=True)
    for name in (layout.CHECKPOINT_DIR, layout.TENSORBOARD_DIR):
        shutil.rmtree(job_dir / name, ignore_errors=True)


def start_job(cfg: DictConfig) -> JobStart:
    """Decide how this sweep job starts and prepare it: for ``resume``, set ``cfg.resume`` to the
    job's folder; for ``restart``, clear the earlier attempt. Logs one line unless the job is new."""
    job_dir = Path(cfg.paths.output_dir)
    start = plan_job(job_dir, int(cfg.trainer.get("max_steps", -1)), bool(cfg.get("sweep_retry_failed", True)))
    if start.how == "skip":
        status = start.record.get("status") if start.record else None
        figure = (start.record or {}).get("metrics", {}).get("val/bpb")
        shown = f"val/bpb {figure:.4f}" if isinstance(figure, (int, float)) else str(status)
        log.info(
            "job %s %s earlier (%s): not run again", job_dir.name, "finished" if status == "ok" else "failed", shown
        )
    elif start.how == "resume":
        with open_dict(cfg):
            cfg.resume = str(job_dir)
        pass_to_ranks(f'resume="{job_dir}"')  # DDP ranks > 0 resume from the same checkpoint
        log.info("job %s continues from its %s (step %d)", job_dir.name, layout.LAST_CHECKPOINT, start.step)
    elif start.how == "restart":
        clear_attempt(job_dir)
        log.info("job %s starts again: its earlier attempt saved no usable checkpoint", job_dir.name)
    return start
