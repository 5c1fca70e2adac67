"""What every bench section shares: the machine, timing, peak memory, composing attnlab's config."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


def machine() -> dict[str, Any]:
    """CPU model, cores, threads torch uses, torch version, device: recorded with every figure."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import lightning

    from attnlab.system.hardware import cpu_has_bf16

    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "avx512_bf16": cpu_has_bf16(),  # native bf16 (AVX-512 BF16 or AMX): what picks bf16 by default
        "torch": torch.__version__,
        "lightning": lightning.__version__,
        "python": platform.python_version(),
        "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu",
    }


def median_seconds(fn: Callable[[], Any], repeats: int, number: int = 1, warmup: int = 1) -> float:
    """Median over ``repeats`` of the mean time of ``number`` calls of ``fn``, after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(number):
            fn()
        times.append((time.perf_counter() - start) / number)
    return statistics.median(times)


def median(values: list[float]) -> float:
    return statistics.median(values)


# --------------------------------------------------------------------------------------------
# Peak memory of one call
# --------------------------------------------------------------------------------------------


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def make_rss_exact() -> None:
    """Let freed memory leave the process at once, so resident memory tracks live tensors: glibc
    serves every allocation of 64 KiB or more with its own mmap (a fixed threshold also stops
    glibc from raising it as blocks are freed). Only for a process that measures memory: it is
    the opposite of what training wants (``attnlab.system.memory.keep_freed_memory``)."""
    import ctypes
    import ctypes.util

    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # malloc.h
    libc.mallopt(M_MMAP_THRESHOLD, 64 * 1024)
    libc.mallopt(M_TRIM_THRESHOLD, 64 * 1024)


def peak_bytes(fn: Callable[[], Any]) -> int:
    """Bytes of memory ``fn()`` needs at its peak beyond what was resident before it.

    CUDA: the allocator's peak. CPU (Linux): the resident-set high-water mark (``VmHWM``), reset to
    the current size just before the call (``/proc/self/clear_refs``), minus that size.
    """
    if torch.cuda.is_available():
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() - before
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    fn()
    return max(0, _status_kib("VmHWM") - before) * 1024


# --------------------------------------------------------------------------------------------
# attnlab's config, as `python train.py <overrides>` composes it
# --------------------------------------------------------------------------------------------


def compose(*overrides: str):
    from hydra import compose as hydra_compose

    from attnlab.system.resolvers import register_resolvers

    register_resolvers()  # as every entry point does (attnlab.cli.run_hydra_app)
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=[f"paths.root={ROOT}", *overrides])
