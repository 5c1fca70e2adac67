"""The Hydra callback of every multirun: check what would fail every job before it starts (and that
a continued sweep is the same sweep, :mod:`attnlab.sweeps.continuation`), write
the sweep's report when it ends (with the best trial so far of an Optuna study), and exit with
status 1 if any job failed.

``hydra.callbacks.sweep_report`` in conf/config.yaml. This module imports no torch or Lightning:
Hydra builds the callback for every command, ``--help`` included.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from attnlab.errors import ConfigError, user_errors
from attnlab.sweeps.continuation import check_same_sweep, continue_command
from attnlab.sweeps.plan import is_optuna
from attnlab.sweeps.report import write_report
from attnlab.sweeps.study import record_study, sqlite_file
from attnlab.system.console import shown_path

log = logging.getLogger(__name__)


class SweepReport(Callback):
    """Hydra callback: before a multirun, check what would fail every job and note the Optuna study
    it adds to; after it, write the sweep's report, log the study's best trial, and exit with
    status 1 if any job failed."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        with user_errors():
            check_launcher(config)
            check_same_sweep(config)
            make_storage_folder(config)
            record_study(config)
        if not is_optuna(config.hydra.sweeper):
            log.info(
                "sweep %s; if it stops early, continue with: %s",
                shown_path(config.hydra.sweep.dir),
                continue_command(Path(config.hydra.sweep.dir)),
            )

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        summary = write_report(sweep_dir)
        for job in summary.jobs:
            if job.status == "failed":
                log.error("job %s failed (%s): %s", job.name, summary.swept_overrides(job), job.error)
        if summary.study is not None:
            log.info("%s", summary.study.line())
        log.info("sweep %s: %s; report in %s", sweep_dir, summary.counts_line(), sweep_dir / "summary.md")
        if summary.failed:
            sys.exit(1)


def check_launcher(config: DictConfig) -> None:
    """SLURM sizes each job from trainer.devices (GPUs = tasks per node): it must be a number."""
    target = str(config.hydra.launcher.get("_target_", ""))
    if target.endswith("SlurmLauncher"):
        devices = config.trainer.get("devices")
        if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
            raise ConfigError(
                f"hydra/launcher=slurm needs the GPUs per node as a number, got trainer.devices={devices!r}; "
                "set trainer.devices=8 (for example)"
            )


def make_storage_folder(config: DictConfig) -> None:
    """Create the folder of an Optuna SQLite study file (SQLite does not create folders)."""
    file = sqlite_file(config.hydra.sweeper.get("storage"))
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
