#!/usr/bin/env python
"""Train a multi-head causal transformer: ``python train.py [key=value ...]``; sweep with ``-m``.

Configs live in ``conf/`` (``python train.py --help`` lists the groups and the composed config);
the work is done by :func:`attnlab.train.train`, run as one job by :func:`attnlab.sweep.run_job`
(which records ``<run>/metrics.json`` and lets a sweep go on past a failed job).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
os.environ.setdefault("ATTNLAB_ROOT", str(ROOT))
sys.path.insert(0, str(ROOT / "src"))  # run from a checkout even before `pip install -e .`

import hydra  # noqa: E402
from omegaconf import DictConfig  # noqa: E402

from attnlab.cli import user_errors  # noqa: E402
from attnlab.sweep import run_job  # noqa: E402


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float:
    from attnlab.train import train  # imported here so that --help answers at once

    with user_errors():
        return run_job(train, cfg)  # the final val/bpb, which sweepers minimise (+inf for a failed sweep job)


if __name__ == "__main__":
    main()
