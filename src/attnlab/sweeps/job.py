"""One job of a run or a sweep: it records its facts in ``<job>/metrics.json``, and a failed sweep job lets the sweep go on.

Hydra's sweepers stop at the first job whose task raised (the BasicSweeper reads every job's
``return_value``; the Optuna sweeper fails the study). So in a multirun :func:`run_job` does not
raise: a job that fails logs its one-line error (console and ``<job>/train.log``), records
``status: failed`` in ``<job>/metrics.json`` and returns +inf, the worst value for a minimising
search, and the sweep goes on. When the multirun ends, :class:`attnlab.sweeps.multirun.SweepReport`
writes the report (:mod:`attnlab.sweeps.report`) and exits with status 1 if any job failed.

A sweep job whose folder holds an earlier attempt (a continued sweep, a requeued SLURM job) is
skipped, resumed or started again as :mod:`attnlab.sweeps.continuation` decides. A preempted job
(:class:`attnlab.training.preemption.Preempted`: its ``last.ckpt`` is saved) records
``status: preempted``, logs the command that goes on, and the process exits with status 75.

This module imports no torch or Lightning at import time: Hydra builds the callback for every
command, ``--help`` included.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from attnlab.errors import AttnlabError
from attnlab.runs import layout
from attnlab.runs.atomic import atomic_write_json
from attnlab.runs.resume import launch_overrides, run_overrides
from attnlab.sweeps.continuation import continue_command, start_job
from attnlab.system.console import shown_path
from attnlab.system.distributed import separate_job

log = logging.getLogger(__name__)

OBJECTIVE = "val/bpb"  # what train.py's task returns, and a search minimises
FAILED_OBJECTIVE = math.inf  # a failed job's return value: never the best of a minimising search


def _finite_or_none(value: Any) -> Any:
    return value if not isinstance(value, float) or math.isfinite(value) else None


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``python train.py -m ...``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False


def _launches(output_dir: Path) -> list[list[str]]:
    """The overrides of each launch of the job's run: Hydra's records in its folder (the launch
    that started it, then each resume), else this launch's."""
    from hydra.core.hydra_config import HydraConfig

    recorded = launch_overrides(output_dir)
    if recorded or not HydraConfig.initialized():
        return recorded
    return [list(HydraConfig.get().overrides.task)]


def _is_rank_zero() -> bool:
    """Rank zero of a DDP job (exact once a Trainer exists; before that, read from the environment)."""
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    return getattr(rank_zero_only, "rank", 0) == 0


def record_job(
    output_dir: Path, status: str, seconds: float, metrics: dict[str, float] | None = None, error: str | None = None
) -> dict[str, Any]:
    """Write ``<output_dir>/metrics.json`` (atomically, rank zero only) and return what it holds."""
    launches = _launches(output_dir)
    record = {
        "status": status,  # ok | failed | preempted (its last.ckpt is saved)
        "overrides": run_overrides(launches),  # what sets the run's config: the original's, then each resume's
        "launches": launches,  # each launch's overrides as given, the original first
        "seconds": round(seconds, 3),  # the job's wall time, data preparation included
        "metrics": {k: _finite_or_none(v) for k, v in (metrics or {}).items()},  # null: not finite
        "error": error,
    }
    if _is_rank_zero():
        atomic_write_json(layout.job_record(output_dir), record)
    return record


def objective(metrics: dict[str, float | None]) -> float:
    """The value a sweeper minimises: the final val/bpb, +inf when there is none (or it is not finite)."""
    value = metrics.get(OBJECTIVE)
    return value if isinstance(value, (int, float)) and math.isfinite(value) else FAILED_OBJECTIVE


def recorded_objective(record: dict[str, Any] | None) -> float:
    """:func:`objective` of a job that ran before, from its ``metrics.json`` (+inf unless it finished)."""
    if not record or record.get("status") != "ok":
        return FAILED_OBJECTIVE
    return objective(record.get("metrics") or {})


def how_to_go_on(output_dir: Path, multirun: bool) -> str:
    """The command that continues a stopped run (``resume=``) or its sweep (``sweep_dir=``)."""
    if multirun:
        from hydra.core.hydra_config import HydraConfig

        return f"continue with: {continue_command(Path(HydraConfig.get().sweep.dir))}"
    return f"resume with: python train.py resume={shown_path(output_dir)}"


def run_job(task: Callable[[DictConfig], dict[str, float]], cfg: DictConfig) -> float:
    """Run ``task(cfg)`` as one run or one sweep job; record it; return :func:`objective`.

    A single run re-raises a failure (the entry point turns an AttnlabError into one line and
    exit status 2) and records nothing. A sweep job records and logs it and returns +inf, so the
    other jobs still run. A sweep job that finished before is not run again (its recorded
    objective); a preempted run or job records ``preempted`` and exits with status 75.
    """
    from attnlab.training.preemption import PREEMPTED_EXIT_STATUS, Preempted  # training imports torch anyway

    output_dir = Path(cfg.paths.output_dir)
    multirun = in_multirun()
    if multirun:  # its folder may hold an earlier attempt: a continued sweep, a requeued SLURM job
        start = start_job(cfg)
        if start.how == "skip":
            return recorded_objective(start.record)
    started = time.perf_counter()
    try:
        with separate_job():
            metrics = task(cfg)
    except Preempted as stop:  # the checkpoint is saved: record it, say how to go on, exit "try again later"
        record_job(output_dir, "preempted", time.perf_counter() - started, error=str(stop))
        log.warning("%s; %s", stop, how_to_go_on(output_dir, multirun))
        raise SystemExit(PREEMPTED_EXIT_STATUS) from None
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C (Lightning turns it into exit(1))
        if multirun:
            log.warning("sweep interrupted; %s", how_to_go_on(output_dir, multirun))
        raise
    except Exception as err:
        message = str(err) if isinstance(err, AttnlabError) else f"{type(err).__name__}: {err}"
        if not multirun:  # one line and exit 2; nothing written (a refused resume keeps the run's record)
            raise
        record_job(
            output_dir, "failed", time.perf_counter() - started, error=message.splitlines()[0] if message else ""
        )
        if isinstance(err, AttnlabError):
            log.error("error: %s", err)
        else:  # a bug or a crash (out of memory, ...): the traceback goes to the job's log
            log.exception("job failed: %s", message)
        return FAILED_OBJECTIVE
    record_job(output_dir, "ok", time.perf_counter() - started, metrics)
    return objective(metrics)
