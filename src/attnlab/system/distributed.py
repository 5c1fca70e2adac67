"""DDP under Hydra: which process starts, writes and logs what.

With ``strategy=ddp`` Lightning starts ranks 1..N-1 of each node by running the entry script
again. Its default command for Hydra apps repeats ``sys.argv`` with ``hydra.run.dir`` set, which
goes wrong in three ways: in a multirun the argv holds ``-m`` and the sweep, so every rank would
start a sweep of its own; ``run.dir`` is not the job's folder in a multirun (that is
``sweep.dir/subdir``), so ranks would train in a stray folder; and each rank would write its own
``<job>.log``. :func:`rank_command` instead re-runs exactly this job: its own overrides (as
the sweeper chose them), in its own folder, as a single run with no ``.hydra/`` record and no
log file. Everything that writes files is rank-zero only (checkpoints, TensorBoard, config.yaml,
metrics.json), so a DDP run leaves the same folder as a single-process one.

Where the processes are started by someone else (SLURM through ``hydra/launcher=slurm``, or
torchrun), every rank runs the Hydra job itself; :class:`RankZeroLog` keeps ranks > 0 out of the
job's log file there. :func:`separate_job` lets a sweep run DDP jobs one after another in one
process.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

# set by Lightning's launcher in the launching process; a later job in the same process must not see them
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


_rank_overrides: list[str] = []  # set by the job for its ranks (pass_to_ranks), cleared by separate_job


def pass_to_ranks(*overrides: str) -> None:
    """Add ``overrides`` to the command of this job's ranks > 0: rank 0 decided them after Hydra
    started (a continued sweep job resumes: ``resume=<job>``), so the ranks' overrides lack them."""
    _rank_overrides.extend(overrides)


def rank_command(local_rank: int) -> tuple[Sequence[str], str]:
    """``(argv, cwd)`` for local rank ``local_rank`` of the current Hydra job."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.utils import get_original_cwd

    import __main__

    hydra_cfg = HydraConfig.get()
    if getattr(__main__, "__spec__", None) is None:  # python train.py
        command = [sys.executable, str(Path(sys.argv[0]).resolve())]
    else:  # python -m package.module
        command = [sys.executable, "-m", __main__.__spec__.name]
    command += ["--config-name", hydra_cfg.job.config_name]
    for source in hydra_cfg.runtime.config_sources:  # --config-dir given on the command line
        if source.provider == "command-line" and source.schema == "file":
            command += ["--config-dir", source.path]
    command += [*hydra_cfg.overrides.task, *_rank_overrides]
    command += [
        f'hydra.run.dir="{hydra_cfg.runtime.output_dir}"',  # this job's folder, also in a multirun
        f"hydra.job.name={hydra_cfg.job.name}_rank{local_rank}",
        "hydra.output_subdir=null",  # rank zero wrote .hydra/
        "hydra/job_logging=none",  # rank zero writes the log; warnings still reach the console
        "hydra/hydra_logging=none",
    ]
    return command, get_original_cwd()


def use_rank_command() -> None:
    """Make Lightning's DDP launcher start ranks > 0 with :func:`rank_command` under Hydra."""
    from lightning.pytorch.strategies.launchers import subprocess_script

    subprocess_script._hydra_subprocess_cmd = rank_command


@contextlib.contextmanager
def separate_job() -> Iterator[None]:
    """Let several DDP jobs run one after another in one process (a sweep's jobs do).

    Lightning's launcher leaves its process group open and its variables (``MASTER_PORT``,
    ``LOCAL_RANK``, ...) in ``os.environ``; the next job's Trainer would take them for an
    external launcher's and wait for ranks that never start. Afterwards the group is closed and
    the variables are as before.
    """
    saved = {key: os.environ.get(key) for key in LAUNCHER_ENV}
    try:
        yield
    finally:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
        _rank_overrides.clear()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def launcher_rank() -> int:
    """The global rank an external launcher gave this process (torchrun: RANK, SLURM: SLURM_PROCID); 0 if none."""
    return int(os.environ.get("RANK") or os.environ.get("SLURM_PROCID") or 0)


class RankZeroLog(Callback):
    """Hydra callback: in a job whose ranks were started by SLURM or torchrun, only rank 0
    writes ``<job>/train.log`` (the others log to their console, which SLURM keeps per task)."""

    def on_job_start(self, config: Any = None, **kwargs: Any) -> None:
        if launcher_rank() == 0:
            return
        root = logging.getLogger()
        for handler in [h for h in root.handlers if isinstance(h, logging.FileHandler)]:
            root.removeHandler(handler)
            handler.close()
