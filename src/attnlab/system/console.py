"""What reaches the console: one log format, and no warnings that do not apply to attnlab's design."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path


def shown_path(path: str | Path) -> str:
    """``path`` as a message shows it: relative to the working folder when it lies below it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def tidy_output() -> None:
    """Called by every task that runs Lightning (train, eval), before it builds a Trainer."""
    import lightning  # noqa: F401  (adds its own console handler on import)

    if logging.getLogger().hasHandlers():  # Hydra's handlers (console + <run>/train.log) take it all
        # lightning, lightning.pytorch and lightning.fabric add a console handler of their own when
        # imported before the root logger has one (the bootstrap's checks import them before Hydra
        # sets up logging), and the last two then stop passing records up: undo both
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logging.getLogger(name).handlers.clear()
            logging.getLogger(name).propagate = True
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
