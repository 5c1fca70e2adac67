"""Process memory tuning applied before training and evaluation (glibc malloc)."""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

_M_TRIM_THRESHOLD = -1  # glibc mallopt parameters (malloc.h)
_M_MMAP_MAX = -4


def keep_freed_memory() -> bool:
    """Stop glibc from handing large freed blocks back to the kernel.

    By default glibc serves every allocation over 32 MB (a batch's logits: B*T*V floats) with a
    fresh ``mmap`` and unmaps it on free, so each training step page-faults its big tensors in
    anew: about 130,000 faults per step for the default model, a third of the CPU time spent in
    the kernel. Keeping freed memory in the heap for reuse roughly halves the step time on CPU
    (see docs/benchmarks.md); the cost is that the process keeps its peak memory. Linux/glibc
    only; returns whether it applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to tune
        return False
    ok = mallopt(_M_MMAP_MAX, 0) == 1 and mallopt(_M_TRIM_THRESHOLD, 2**31 - 1) == 1
    if not ok:
        log.warning("could not tune glibc malloc; training may spend time in page faults")
    return ok
