"""The config resolvers of conf/: ``${attnlab.precision:<accelerator>}`` (the default precision),
``${attnlab.run_dir:...}`` and ``${attnlab.record_dir:...}`` (a resumed run keeps its folder),
``${attnlab.sweep_dir:...}`` (a continued sweep keeps its folder),
``${attnlab.study_seed:<seed>,<storage>,<study name>}`` (an Optuna sampler's seed, new for each call).

Every entry point calls :func:`register_resolvers` before Hydra composes its config
(:func:`attnlab.cli.run_hydra_app`); so do the tests' and benchmarks' compose helpers.
"""

from __future__ import annotations

from omegaconf import OmegaConf

from attnlab.runs.resume import record_dir, run_dir
from attnlab.sweeps.continuation import sweep_dir
from attnlab.sweeps.study import study_seed
from attnlab.system.hardware import best_precision


def register_resolvers() -> None:
    OmegaConf.register_new_resolver("attnlab.precision", best_precision, replace=True)
    OmegaConf.register_new_resolver("attnlab.run_dir", run_dir, replace=True)
    OmegaConf.register_new_resolver("attnlab.record_dir", record_dir, replace=True)
    OmegaConf.register_new_resolver("attnlab.sweep_dir", sweep_dir, replace=True)
    OmegaConf.register_new_resolver("attnlab.study_seed", study_seed, replace=True)
