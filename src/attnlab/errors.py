"""User-facing errors.

Anything the user can fix (a bad config value, a missing file) raises :class:`AttnlabError`
with one line that names the problem and the fix. Entry points turn it into that line on
stderr and a non-zero exit, instead of a traceback.
"""

from __future__ import annotations


class AttnlabError(Exception):
    """A problem with the user's input, explained in one line."""


class ConfigError(AttnlabError):
    """An invalid configuration value."""


class DataError(AttnlabError):
    """A corpus or cache that cannot be used."""


class CheckpointError(AttnlabError):
    """A checkpoint that is missing, unreadable or not attnlab's."""
