"""The token file: a corpus's ids as raw integers on disk, opened with ``np.memmap``.

Two files per corpus and tokenizer, side by side in ``data.cache_dir``:

``<name>.tokens``  the ids, nothing else: little-endian ``uint16`` when the vocabulary has at most
                   65,536 ids, else ``uint32``; ``num_tokens * itemsize`` bytes
``<name>.json``    the sidecar: ``format``, ``dtype``, ``num_tokens``, ``sha256`` (of the whole
                   token file, as ``sha256sum`` prints it), ``samples`` (the SHA-256 of its sampled
                   blocks), ``vocab`` (the sorted base ids the dense ids stand for; null when the
                   ids are the base tokenizer's own) and ``vocab_sha256``, and what the caller adds
                   (:mod:`attnlab.data.token_cache`: the key and the source manifest)

Every process opens the ids read-only with ``np.memmap``: DDP ranks share the page cache, and a
training process's memory does not grow with the corpus (it reads the pages its windows touch).

Writing is atomic: the token file is written under a temporary name (its SHA-256 computed as it
goes), renamed into place, then the sidecar likewise; a reader that finds the sidecar finds its
token file. A write the disk refuses removes the temporary file and is one line naming the space
needed (:mod:`attnlab.runs.storage`). Two builders of the same corpus write the same bytes; the
last rename wins.

The check at every start reads no more than 1 MiB, whatever the corpus's size: the sidecar parses
and is of this format, the vocabulary matches its SHA-256, the token file's size is
``num_tokens * itemsize``, and the SHA-256 of 16 blocks of 64 KiB (the first, the last and 14
evenly between; the whole file when it is smaller) matches ``samples``. It catches a truncated,
extended, emptied or rewritten file, a lost sidecar and a torn copy; a flipped bit outside the
sampled blocks it does not (the whole-file ``sha256`` does, with ``sha256sum``). A file that fails
is reported as damaged, and :mod:`attnlab.data.token_cache` rebuilds it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.errors import DataError
from attnlab.runs.atomic import atomic_write, atomic_write_json

FORMAT = "attnlab-tokens/1"
SAMPLE_BLOCKS = 16
SAMPLE_BYTES = 1 << 16  # 64 KiB
DTYPES = ("uint16", "uint32")


@dataclass
class TokenizedCorpus:
    """A corpus as ids: dense ids of its own vocabulary (``vocab[ids]`` are the base tokenizer's
    ids), or, with ``vocab`` None, the base tokenizer's ids themselves."""

    ids: np.ndarray  # (N,) uint16 or uint32, a read-only np.memmap when read from the cache
    vocab: np.ndarray | None  # (V,) sorted base ids that occur in the corpus
    meta: dict[str, Any] = field(default_factory=dict)  # the sidecar

    def base_ids(self) -> np.ndarray:
        return self.ids if self.vocab is None else self.vocab[self.ids]


def dtype_for(vocab_size: int) -> np.dtype:
    """The smallest of uint16 and uint32 that holds ids ``0..vocab_size-1``."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def sidecar_of(path: Path) -> Path:
    return path.with_suffix(".json")


def _vocab_digest(vocab: np.ndarray | None) -> str | None:
    return None if vocab is None else hashlib.sha256(np.ascontiguousarray(vocab, dtype="<i8")).hexdigest()


def _sample_starts(nbytes: int) -> list[int]:
    if nbytes <= SAMPLE_BLOCKS * SAMPLE_BYTES:
        return list(range(0, nbytes, SAMPLE_BYTES))  # the whole file
    last = nbytes - SAMPLE_BYTES
    return [i * last // (SAMPLE_BLOCKS - 1) for i in range(SAMPLE_BLOCKS)]


def sampled_digest(path: Path) -> str:
    """SHA-256 of the file's size and of its sampled blocks (at most 1 MiB read)."""
    nbytes = path.stat().st_size
    h = hashlib.sha256(f"{nbytes};".encode())
    with open(path, "rb") as f:
        for start in _sample_starts(nbytes):
            f.seek(start)
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


def write_token_file(
    path: Path,
    blocks: Iterable[np.ndarray],
    dtype: np.dtype,
    vocab: np.ndarray | None,
    needed: int | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """Write ``blocks`` (each (n,) ids) one after another as ``path`` and then its sidecar, both
    atomically; ``needed``: the bytes it needs, for the line a full disk gives. Returns the sidecar."""
    dtype = np.dtype(dtype).newbyteorder("<")
    h, n = hashlib.sha256(), 0
    with atomic_write(path, needed=needed) as f:
        for block in blocks:
            data = np.ascontiguousarray(block, dtype=dtype)  # (n,)
            f.write(memoryview(data).cast("B"))
            h.update(data)
            n += len(data)
    meta = {
        "format": FORMAT,
        "dtype": dtype.name,
        "num_tokens": n,
        "sha256": h.hexdigest(),
        "samples": sampled_digest(path),
        **fields,
        "vocab_sha256": _vocab_digest(vocab),
        "vocab": None if vocab is None else [int(i) for i in vocab],
    }
    atomic_write_json(sidecar_of(path), meta)
    return meta


def write_token_cache(path: Path, tokens: TokenizedCorpus, **fields: Any) -> dict[str, Any]:
    """:func:`write_token_file` of ids held in memory (a small corpus)."""
    vocab_bytes = 0 if tokens.vocab is None else tokens.vocab.nbytes
    return write_token_file(
        path, [tokens.ids], tokens.ids.dtype, tokens.vocab, needed=tokens.ids.nbytes + vocab_bytes, **fields
    )


def read_token_file(path: Path) -> TokenizedCorpus:
    """The ids of ``path``, memory-mapped, after the check of the module's docstring;
    :class:`DataError` (why, in a few words) when the file or its sidecar is missing or damaged."""
    try:
        meta = json.loads(sidecar_of(path).read_text(encoding="utf-8"))
        fmt, dtype_name, n = meta["format"], meta["dtype"], int(meta["num_tokens"])
        samples, vocab = meta["samples"], meta["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as err:  # missing, not JSON, a field missing
        raise DataError(f"its sidecar {sidecar_of(path).name} is unreadable ({type(err).__name__}: {err})") from None
    if fmt != FORMAT or dtype_name not in DTYPES:
        raise DataError(f"its sidecar is of format {fmt!r} ({dtype_name}), not {FORMAT!r}")
    vocab = None if vocab is None else np.asarray(vocab, dtype=np.int64)  # (V,)
    if _vocab_digest(vocab) != meta.get("vocab_sha256"):
        raise DataError("its sidecar's vocabulary does not match its checksum")
    dtype = np.dtype(dtype_name).newbyteorder("<")
    try:
        size = path.stat().st_size
    except OSError as err:
        raise DataError(f"its token file is missing ({type(err).__name__})") from None
    if size != n * dtype.itemsize:
        raise DataError(f"its token file holds {size / dtype.itemsize:,.0f} tokens, its sidecar says {n:,}")
    if sampled_digest(path) != samples:
        raise DataError("its token file's sampled blocks do not match their checksum")
    ids = np.memmap(path, dtype=dtype, mode="r", shape=(n,)) if n else np.zeros(0, dtype=dtype)  # (N,)
    return TokenizedCorpus(ids=ids, vocab=vocab, meta=meta)
