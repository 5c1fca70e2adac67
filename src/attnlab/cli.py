"""Shared plumbing for the entry points (train.py and friends)."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import warnings
from typing import Iterator

from attnlab import hardware, resume
from attnlab.errors import AttnlabError


def register_resolvers() -> None:
    """Config resolvers used in conf/: ``${attnlab.run_dir:...}`` and ``${attnlab.record_dir:...}``
    (a resumed run keeps its folder), ``${attnlab.precision:<accelerator>}`` (the default precision).
    Every entry point imports this module before Hydra composes its config."""
    resume.register_resolvers()
    hardware.register_resolvers()


register_resolvers()


def tidy_output() -> None:
    """One log format, and no warnings that do not apply to attnlab's design (they bury real ones)."""
    import lightning  # noqa: F401  (adds its own console handler on import)

    if logging.getLogger().hasHandlers():  # Hydra's handlers (console + <run>/train.log) take it all
        logging.getLogger("lightning").handlers.clear()
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(lambda r: "Tip:" not in r.getMessage())
    # batches are gathered with one vectorised index on the main process: workers would only add IPC
    warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
    # the training set yields exactly max_steps batches, so its length is exact (no workers split it)
    warnings.filterwarnings("ignore", message=r".*IterableDataset.*has `__len__` defined.*")
    # on resume: our loader is resumable without Lightning's state_dict protocol (batch k is a pure
    # function of (seed, rank, k) and the loader starts at the restored global step)
    warnings.filterwarnings("ignore", message=r".*resuming from a checkpoint that ended before the epoch ended.*")
    # a resumed run writes into its own checkpoints/ folder on purpose
    warnings.filterwarnings("ignore", message=r".*Checkpoint directory .* exists and is not empty.*")
    # raised inside Lightning by newer torch; nothing a user can act on
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an :class:`AttnlabError` into one ``error: ...`` line and exit status 2.

    ``HYDRA_FULL_ERROR=1`` keeps the traceback. (A sweep job does not get here: it records its
    error and lets the sweep go on, see :func:`attnlab.sweep.run_job`.)
    """
    try:
        yield
    except AttnlabError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)


def in_multirun() -> bool:
    """Whether this process runs a job of a Hydra multirun (``python train.py -m ...``)."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:
        return False
