"""User-facing errors.

Anything the user can fix (a bad config value, a missing file) raises :class:`AttnlabError`
with one line that names the problem and the fix. Entry points turn it into that line on
stderr and a non-zero exit, instead of a traceback.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator


class AttnlabError(Exception):
    """A problem with the user's input, explained in one line."""


class ConfigError(AttnlabError):
    """An invalid configuration value."""


class DataError(AttnlabError):
    """A corpus or cache that cannot be used."""


class CheckpointError(AttnlabError):
    """A checkpoint that is missing, unreadable or not attnlab's."""


class StorageError(AttnlabError):
    """A write the filesystem refuses: no space, a quota or file-size limit, no permission, read-only."""


class RunInUseError(AttnlabError):
    """A run folder that another process is training in."""


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Turn an :class:`AttnlabError` into one ``error: ...`` line on stderr and exit status 2.

    ``HYDRA_FULL_ERROR=1`` keeps the traceback. (A sweep job does not get here: it records its
    error and lets the sweep go on, see :func:`attnlab.sweeps.job.run_job`.)
    """
    try:
        yield
    except AttnlabError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {err}", file=sys.stderr, flush=True)
        sys.exit(2)
