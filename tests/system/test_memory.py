import sys

import pytest

from attnlab.system.memory import keep_freed_memory


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc tuning is Linux-only")
def test_keep_freed_memory_applies_on_glibc():
    assert keep_freed_memory() is True
