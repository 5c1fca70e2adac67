#!/usr/bin/env python
"""Train a multi-head causal transformer: ``python train.py [key=value ...]``; sweep with ``-m``.

Configs live in ``conf/`` (``python train.py --help`` lists the groups and the composed config);
the work is done by :func:`attnlab.training.task.train`, run as one job by
:func:`attnlab.sweeps.job.run_job` (which records ``<run>/metrics.json`` and lets a sweep go on
past a failed job), started by the bootstrap every entry point shares,
:func:`attnlab.cli.run_hydra_app`.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))  # run from a checkout even before `pip install -e .`

from attnlab.cli import run_hydra_app  # noqa: E402


def train_job(cfg) -> float:
    from attnlab.sweeps.job import run_job  # imported here so that --help answers at once
    from attnlab.training.task import train

    return run_job(train, cfg)  # the final val/bpb, which sweepers minimise (+inf for a failed sweep job)


def check_train_job(cfg, keys: list[str]) -> None:
    """What a run checks in its first second (the bootstrap runs it before Hydra writes anything);
    a resumed run's folder stays locked from here on, so a second launch resuming it stops here."""
    from attnlab.training.task import checked_config, claim_run_folder

    checked, resume_from, _ = checked_config(cfg, keys)
    claim_run_folder(checked, resume_from)


if __name__ == "__main__":
    run_hydra_app("config", train_job, check=check_train_job)
