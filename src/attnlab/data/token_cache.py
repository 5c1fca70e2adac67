"""The token cache: a corpus tokenized once, stored with its vocabulary, token count and checksum.

``data/cache/<content hash>-<tokenizer>.npz`` holds the corpus as ids of its own vocabulary;
later runs load it instead of tokenizing again. Files are written atomically and checked when
read; a damaged one is rebuilt with a warning.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from attnlab.data.corpus import DOC_SEPARATOR, Corpus
from attnlab.data.tokenizer import CorpusVocabTokenizer
from attnlab.errors import DataError
from attnlab.runs.atomic import atomic_write

log = logging.getLogger(__name__)


@dataclass
class TokenizedCorpus:
    """The corpus as ids of its own vocabulary: ``vocab[ids]`` are the base tokenizer's ids."""

    ids: np.ndarray  # (N,) dense ids 0..V-1 (uint16 when V <= 65536)
    vocab: np.ndarray  # (V,) sorted base-tokenizer ids that occur in the corpus

    def base_ids(self) -> np.ndarray:
        return self.vocab[self.ids]


def tokenize_corpus(corpus: Corpus, base: Any, max_vocab: int | None = None) -> TokenizedCorpus:
    """Encode every document (in parallel) and join them with the separator's tokens. With
    ``max_vocab``, keep the most frequent tokens and spell the rarer ones with single bytes."""
    docs = base.encode_batch(corpus.documents)
    sep = base.encode(DOC_SEPARATOR)
    pieces = [docs[0]]
    for doc in docs[1:]:
        pieces += [sep, doc]
    base_ids = np.concatenate(pieces).astype(np.int64)
    if max_vocab is None:
        vocab = CorpusVocabTokenizer.vocab_of(base_ids, base.vocab_size)
        dense = CorpusVocabTokenizer(base, vocab).to_dense(base_ids)
    else:
        vocab = CorpusVocabTokenizer.capped_vocab_of(base_ids, base, max_vocab)
        capped = CorpusVocabTokenizer(base, vocab)
        dense = capped.to_dense(capped.spell_out(base_ids))
    dtype = np.uint16 if len(vocab) <= 1 << 16 else np.uint32
    return TokenizedCorpus(ids=dense.astype(dtype), vocab=vocab)


def cache_path(cache_dir: str | Path, corpus: Corpus, base: Any, max_vocab: int | None = None) -> Path:
    cap = f"-max{max_vocab}" if max_vocab is not None else ""
    return Path(cache_dir) / f"{corpus.fingerprint()[:20]}-{base.name}{cap}.npz"


def tokens_digest(ids: np.ndarray, vocab: np.ndarray) -> str:
    """SHA-256 of the ids and the vocabulary (values, dtypes and lengths)."""
    h = hashlib.sha256()
    for a in (ids, vocab):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}:{len(a)};".encode())
        h.update(a.data)
    return h.hexdigest()


def write_token_cache(path: Path, tokens: TokenizedCorpus) -> None:
    """Write atomically, with the token count and checksum that :func:`read_token_cache` checks.

    Two runs that build the same cache at once each write a whole file under a temporary name and
    rename it into place; the last rename wins and both files hold the same ids. A write the disk
    refuses (full, read-only, ...) is one line naming the file and its size.
    """
    with atomic_write(path, needed=tokens.ids.nbytes + tokens.vocab.nbytes) as f:  # a full disk: one line
        np.savez(
            f,
            ids=tokens.ids,
            vocab=tokens.vocab,
            num_tokens=np.int64(len(tokens.ids)),
            sha256=np.str_(tokens_digest(tokens.ids, tokens.vocab)),
        )


def read_token_cache(path: Path) -> TokenizedCorpus:
    """The cached ids; :class:`DataError` if the file is truncated, altered or not a cache."""
    try:
        with np.load(path, allow_pickle=False) as npz:
            ids, vocab = npz["ids"], npz["vocab"]
            num_tokens, digest = int(npz["num_tokens"]), str(npz["sha256"])
    except Exception as err:  # a truncated zip, a missing member, a foreign file
        raise DataError(f"unreadable ({type(err).__name__}: {err})") from None
    if len(ids) != num_tokens:
        raise DataError(f"holds {len(ids)} tokens, its header says {num_tokens}")
    if tokens_digest(ids, vocab) != digest:
        raise DataError("checksum mismatch")
    return TokenizedCorpus(ids=ids, vocab=vocab)


def load_or_build_tokens(
    corpus: Corpus, base: Any, cache_dir: str | Path, max_vocab: int | None = None
) -> TokenizedCorpus:
    """Tokenize once: later calls load ``cache_dir/<content hash>-<tokenizer>.npz``.

    A cache that fails its checks is rebuilt, with a warning.
    """
    path = cache_path(cache_dir, corpus, base, max_vocab)
    if path.exists():
        try:
            return read_token_cache(path)
        except DataError as err:
            log.warning("token cache %s is damaged (%s); rebuilding it", path, err)
    tokens = tokenize_corpus(corpus, base, max_vocab)
    write_token_cache(path, tokens)
    log.info("tokenized %s: %d tokens, %d distinct -> %s", corpus.source, len(tokens.ids), len(tokens.vocab), path)
    return tokens
