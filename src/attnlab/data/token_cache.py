"""The token cache: each corpus tokenized once, found again by its files' manifest, not their text.

**The key.** A start with a cached corpus reads none of the text: the cache is current when the
SHA-256 of these fields matches: the cache's format; the source (its absolute path and
``data.text_field``; a dataset's ``data.hf_dataset``, ``data.hf_split`` and field); the manifest of
its files (each one's path, size and ``mtime_ns``, from ``stat`` only; a dataset's Arrow files),
so a changed, added, removed or renamed file makes a new key; the base tokenizer's name;
the ids (the corpus vocabulary's dense ids, or the base tokenizer's own with
``data.tokenizer.corpus_vocab=false``); the ``max_vocab`` cap; and the separator, the end-of-text
token between documents (its text and base id). The files are
``data/cache/<key, 20 hex digits>-<tokenizer>[-max<cap>][-base].tokens`` and ``.json``, the token
file and its sidecar (:mod:`attnlab.data.token_file`, which also says how a damaged one is
detected); the sidecar holds the key's fields, so ``cat`` tells what a cache holds.

**The build**, in memory bounded whatever the corpus's size (a few pieces in flight, counts of
each base id, one block of ids): the files stream by in pieces of 2 MiB (a large file cut at line
boundaries, :mod:`attnlab.data.formats`), ``data.num_proc`` worker processes tokenize them
(:mod:`attnlab.data.pool`), the end-of-text id goes between documents, and the base ids are
appended as uint32 to a temporary file while their counts add up (``np.bincount``). The counts
give the vocabulary (and the ``max_vocab`` cap); a second pass reads the temporary file block by
block and writes the dense ids (uint16 when the vocabulary fits) to the token file. With
``corpus_vocab=false`` the first pass writes the token file itself. A progress bar (bytes, MB/s,
ETA) shows on stderr when the build takes more than two seconds. Bad input stops the build with
one line; a full disk with one line naming the room needed; either way the temporary files go
and nothing is cached.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
from tqdm import tqdm

from attnlab.data.corpus import Corpus, no_text
from attnlab.data.hf_datasets import HFCorpus
from attnlab.data.pool import Chunk, cores, encode_chunks
from attnlab.data.token_file import TokenizedCorpus, dtype_for, read_token_file, sidecar_of, write_token_file
from attnlab.data.tokenizer import EOT_TEXT, BaseTokenizer, CorpusVocabTokenizer
from attnlab.errors import DataError
from attnlab.runs.atomic import temp_prefix
from attnlab.runs.storage import raise_if_refused

log = logging.getLogger(__name__)

Source = Corpus | HFCorpus  # files (data.path, a named corpus) or a Hugging Face dataset (data.hf_dataset)

CACHE_FORMAT = 1  # in the key: a new layout of the cache makes new keys
CHUNK_CHARS = 1 << 21  # characters a worker gets at a time
PARALLEL_BYTES = 8 << 20  # a smaller corpus is tokenized in this process (a few chunks: workers would wait)
BLOCK_TOKENS = 1 << 20  # ids the second pass maps at a time (about 25 MB of arrays)
PROGRESS_AFTER_S = 2.0  # a build that takes longer shows a progress bar on stderr


def cache_key(corpus: Source, base: BaseTokenizer, max_vocab: int | None, corpus_vocab: bool) -> dict[str, Any]:
    """The fields that decide whether a cache is current (names and ``stat`` only, no text), as
    JSON gives them back (lists, not tuples), so a sidecar's compare equal."""
    key = {
        "cache_format": CACHE_FORMAT,
        "source": corpus.key(),
        "tokenizer": base.name,
        "ids": "corpus_vocab" if corpus_vocab else "base",
        "max_vocab": max_vocab,
        "separator": {"text": EOT_TEXT, "base_id": base.eot_id},
    }
    return json.loads(json.dumps(key))


def cache_path(cache_dir: str | Path, key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    cap = f"-max{key['max_vocab']}" if key["max_vocab"] is not None else ""
    ids = "-base" if key["ids"] == "base" else ""
    return Path(cache_dir) / f"{digest[:20]}-{key['tokenizer']}{cap}{ids}.tokens"


def load_or_build_tokens(
    corpus: Source,
    base: BaseTokenizer,
    cache_dir: str | Path,
    max_vocab: int | None = None,
    corpus_vocab: bool = True,
    num_proc: int | None = None,
) -> TokenizedCorpus:
    """The corpus's ids, memory-mapped: from the cache when it is current and whole, else built
    (with ``num_proc`` processes, default the cores available) and cached. A cache that fails its
    check (:mod:`attnlab.data.token_file`) is rebuilt, with a warning."""
    key = cache_key(corpus, base, max_vocab, corpus_vocab)
    path = cache_path(cache_dir, key)
    if path.exists() or sidecar_of(path).exists():
        try:
            tokens = read_token_file(path)
            if tokens.meta.get("key") != key:
                raise DataError("its sidecar holds another key")
            return tokens
        except DataError as err:
            log.warning("token cache %s is damaged (%s); rebuilding it", path, err)
    build_tokens(corpus, base, path, key, num_proc or cores())
    return read_token_file(path)


def build_tokens(corpus: Source, base: BaseTokenizer, path: Path, key: dict[str, Any], num_proc: int) -> None:
    """Tokenize ``corpus`` into the token file ``path`` and its sidecar (the module's docstring)."""
    started, size = time.perf_counter(), corpus.size()
    made = not path.parent.exists()
    path.parent.mkdir(parents=True, exist_ok=True)
    counts = np.zeros(base.vocab_size, dtype=np.int64)  # (base V,) occurrences of each base id
    # about 4 bytes of text a cl100k token, 1 a character: the room the uint32 ids need, for a full disk's line
    first_pass_bytes = 4 * (size // 4 if base.kind == "tiktoken" else size)
    try:
        with tqdm(
            total=size,
            unit="B",
            unit_scale=True,
            desc=f"tokenizing {corpus.name}",
            delay=PROGRESS_AFTER_S,
            file=sys.stderr,
        ) as bar:
            ids = _base_ids(corpus, base, num_proc, size > PARALLEL_BYTES, counts, bar)
            if key["ids"] == "base":
                meta = write_token_file(path, ids, dtype_for(base.vocab_size), None, first_pass_bytes, key=key)
            else:
                with _scratch(path, first_pass_bytes) as scratch:
                    for block in ids:
                        scratch.write(memoryview(block).cast("B"))
                    vocab = _vocab(counts, base, key["max_vocab"])
                    dense = _dense_ids(scratch, CorpusVocabTokenizer(base, vocab), key["max_vocab"] is not None)
                    dtype = dtype_for(len(vocab))
                    meta = write_token_file(path, dense, dtype, vocab, int(counts.sum()) * dtype.itemsize, key=key)
    except BaseException:
        if made:
            with contextlib.suppress(OSError):  # only when empty: another builder's files stay
                path.parent.rmdir()
        raise
    seconds = time.perf_counter() - started
    log.info(
        "tokenized %s: %d tokens, %s in %.1f s (%.1f MB/s) -> %s",
        corpus.label,
        meta["num_tokens"],
        f"vocabulary {len(meta['vocab'])}" if meta["vocab"] is not None else f"base ids of {base.name}",
        seconds,
        size / 1e6 / max(seconds, 1e-9),
        path,
    )


def _base_ids(
    corpus: Source, base: BaseTokenizer, num_proc: int, parallel: bool, counts: np.ndarray, bar: tqdm
) -> Iterator[np.ndarray]:
    """(n,) uint32 base ids, chunk after chunk (the end-of-text id between documents), counted into ``counts``."""
    init = (base.kind, base.enc.name if base.kind == "tiktoken" else None, base.eot_id)  # the name tiktoken loaded
    has_text = [False]
    for ids in encode_chunks(_chunks(corpus, bar, has_text), init, num_proc, parallel):
        counts += np.bincount(ids, minlength=len(counts))  # (base V,)
        yield ids
    if not has_text[0]:
        raise no_text(corpus.label)


def _chunks(corpus: Source, bar: tqdm, has_text: list[bool]) -> Iterator[Chunk]:
    """The corpus's pieces in chunks of about :data:`CHUNK_CHARS`; each piece that begins a
    document after the first is marked for the end-of-text id. Advances ``bar`` by the files' bytes
    (a dataset's rows: by their characters)."""
    chunk: Chunk = []
    chars, first, file, left = 0, True, None, 0
    for at, piece in corpus.pieces():
        if at != file or at is None:  # None: rows of a dataset, whose Arrow files are about as large as the text
            bar.update(left)  # the rest of the previous file (a .gz: its compressed size)
            file, left = at, at.stat().st_size if at is not None else len(piece.text)
        chunk.append((piece.text, piece.starts and not first))
        first = False
        has_text[0] = has_text[0] or not piece.text.isspace() and piece.text != ""
        step = min(len(piece.text), left)
        bar.update(step)
        chars, left = chars + len(piece.text), left - step
        if chars >= CHUNK_CHARS:
            yield chunk
            chunk, chars = [], 0
    bar.update(left)
    if chunk:
        yield chunk


def _vocab(counts: np.ndarray, base: BaseTokenizer, max_vocab: int | None) -> np.ndarray:
    if max_vocab is None:
        return np.flatnonzero(counts).astype(np.int64)
    return CorpusVocabTokenizer.capped_vocab_of(counts, base, max_vocab)


def _dense_ids(scratch: BinaryIO, tokenizer: CorpusVocabTokenizer, capped: bool) -> Iterator[np.ndarray]:
    """The first pass's base ids read back block by block, as dense ids (rare ones spelled out under a cap)."""
    scratch.flush()
    scratch.seek(0)
    while len(block := np.fromfile(scratch, dtype=np.uint32, count=BLOCK_TOKENS)):  # (<= BLOCK_TOKENS,)
        yield tokenizer.to_dense(tokenizer.spell_out(block) if capped else block)


@contextlib.contextmanager
def _scratch(beside: Path, needed: int) -> Iterator[BinaryIO]:
    """A temporary file beside ``beside`` (named as :mod:`attnlab.runs.atomic` names its own),
    removed when the block ends; a write the disk refuses is one line naming ``beside``."""
    tmp = beside.with_name(f"{temp_prefix(beside)}{secrets.token_hex(6)}.base.tmp")
    try:
        with open(tmp, "w+b") as f:
            yield f
    except BaseException as err:
        raise_if_refused(err, beside, needed, tmp.stat().st_size if tmp.exists() else 0)
        raise
    finally:
        tmp.unlink(missing_ok=True)
