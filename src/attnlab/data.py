"""Corpus -> token ids (cached once) -> sliding-window batches, as a LightningDataModule.

The seed notebooks' batching, made exact and reproducible:

* every window is ``x = ids[i : i+T]``, ``y = ids[i+1 : i+T+1]`` (``y`` is ``x`` shifted by one);
* training draws random offsets ``i``; batch ``k`` of rank ``r`` depends only on ``(seed, r, k)``,
  so a run is reproducible and can resume mid-stream;
* validation walks fixed, non-overlapping windows over the whole val split. Every val token after
  the first is predicted exactly once (the last, shorter window is padded with targets that the
  loss ignores), so val figures are exact and comparable between runs. Under DDP each window goes
  to exactly one process and the metric sums are added across processes.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, IterableDataset

from attnlab.atomic import atomic_write
from attnlab.corpus import DOC_SEPARATOR, Corpus, prepare_named_corpus, read_corpus
from attnlab.errors import ConfigError, DataError
from attnlab.tokenizer import CorpusVocabTokenizer, Tokenizer, build_base_tokenizer

log = logging.getLogger(__name__)

IGNORE_INDEX = -100  # targets with this value carry no loss (padding of the last val window)


# --------------------------------------------------------------------------------------------
# Token cache
# --------------------------------------------------------------------------------------------


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
    rename it into place; the last rename wins and both files hold the same ids.
    """
    with atomic_write(path) as f:
        np.savez(f, ids=tokens.ids, vocab=tokens.vocab, num_tokens=np.int64(len(tokens.ids)),
                 sha256=np.str_(tokens_digest(tokens.ids, tokens.vocab)))


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


def load_or_build_tokens(corpus: Corpus, base: Any, cache_dir: str | Path,
                         max_vocab: int | None = None) -> TokenizedCorpus:
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


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


def gather_windows(ids: np.ndarray, offsets: np.ndarray, context_length: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Windows starting at ``offsets``: x = ids[i:i+T], y = ids[i+1:i+T+1], both (B, T) int64."""
    idx = offsets[:, None] + np.arange(context_length + 1)  # (B, T+1)
    windows = torch.from_numpy(ids[idx].astype(np.int64))  # (B, T+1)
    return windows[:, :-1], windows[:, 1:]  # (B, T), (B, T)


def require_one_window(ids: np.ndarray, context_length: int) -> None:
    if len(ids) < context_length + 1:
        raise DataError(f"need at least {context_length + 1} tokens for one window, got {len(ids)}")


class RandomWindows(IterableDataset):
    """Batches of windows at random offsets; batch ``k`` is a pure function of ``(seed, rank, k)``."""

    def __init__(self, ids: np.ndarray, context_length: int, batch_size: int, seed: int,
                 num_batches: int | None = None, start: int = 0, rank: int = 0):
        require_one_window(ids, context_length)
        self.ids, self.T, self.B = ids, context_length, batch_size
        self.seed, self.rank = seed, rank
        self.num_batches, self.start = num_batches, start
        self.high = len(ids) - context_length  # offsets 0..high-1 keep y inside the data

    def batch(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        rng = np.random.default_rng((self.seed, self.rank, k))
        offsets = rng.integers(0, self.high, size=self.B)  # (B,)
        return gather_windows(self.ids, offsets, self.T)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        k = self.start
        while self.num_batches is None or k < self.num_batches:
            yield self.batch(k)
            k += 1

    def __len__(self) -> int:
        """The run's batches, ``num_batches``, also when iteration resumes at ``start``: Lightning
        restores its batch index on resume and ends the epoch at this length, so a shorter one
        would start a second pass over the data before ``max_steps``."""
        if self.num_batches is None:
            raise TypeError("an unbounded RandomWindows has no length")
        return self.num_batches


class SequentialWindows(Dataset):
    """Non-overlapping windows covering ``ids``; the last one is padded (targets ``IGNORE_INDEX``)."""

    def __init__(self, ids: np.ndarray, context_length: int):
        require_one_window(ids, context_length)
        self.ids, self.T = ids, context_length
        self.n = -(-(len(ids) - 1) // context_length)  # ceil((N-1)/T): every target once

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        start = i * self.T
        chunk = torch.from_numpy(self.ids[start : start + self.T + 1].astype(np.int64))  # (<=T+1,)
        x = torch.zeros(self.T, dtype=torch.long)  # (T,)
        y = torch.full((self.T,), IGNORE_INDEX, dtype=torch.long)  # (T,)
        x[: len(chunk) - 1] = chunk[:-1]
        y[: len(chunk) - 1] = chunk[1:]
        return x, y


# --------------------------------------------------------------------------------------------
# DataModule
# --------------------------------------------------------------------------------------------


class TextDataModule(L.LightningDataModule):
    """Corpus -> tokenizer -> cached ids -> train/val split by position -> window batches."""

    def __init__(self, *, context_length: int, batch_size: int, tokenizer: dict[str, Any],
                 corpus: str | None = None, path: str | None = None, data_dir: str = "data",
                 cache_dir: str = "data/cache", val_fraction: float = 0.1, seed: int = 0,
                 num_workers: int = 0, name: str | None = None):
        super().__init__()
        if path is None and corpus is None:
            raise ConfigError("no text to train on; set data.path=/some/file.txt (or a folder) or data.corpus=shakespeare")
        for key, value in (("context_length", context_length), ("batch_size", batch_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"data.{key} must be a positive integer, got {value!r}")
        if not 0.0 < float(val_fraction) < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {val_fraction!r}")
        self.name = name or (Path(str(path)).stem if path is not None else corpus)
        self.corpus_name, self.path = corpus, path
        self.data_dir, self.cache_dir = data_dir, cache_dir
        self.tokenizer_cfg = dict(tokenizer)
        if self.tokenizer_cfg.get("kind") == "char" and not self.tokenizer_cfg.get("corpus_vocab", True):
            raise ConfigError("data.tokenizer.corpus_vocab=false does not apply to data/tokenizer=char (its vocabulary "
                              "is the corpus's characters); drop the override")
        self.max_vocab = self.tokenizer_cfg.get("max_vocab")
        if self.max_vocab is not None:
            if self.tokenizer_cfg.get("kind", "tiktoken") != "tiktoken" or not self.tokenizer_cfg.get("corpus_vocab", True):
                raise ConfigError("data.tokenizer.max_vocab caps the corpus vocabulary of a tiktoken tokenizer (its rarer "
                                  "tokens spelled with single bytes); use it with data/tokenizer=tiktoken and "
                                  "corpus_vocab=true, or drop it")
            if not isinstance(self.max_vocab, int) or isinstance(self.max_vocab, bool) or self.max_vocab <= 256:
                raise ConfigError(f"data.tokenizer.max_vocab={self.max_vocab!r} leaves no room beside the 256 single-byte "
                                  "fallback tokens; use an integer above 256 (e.g. 4096) or null")
        self.context_length, self.batch_size = context_length, batch_size
        self.val_fraction, self.seed, self.num_workers = float(val_fraction), seed, num_workers
        self.tokenizer: Tokenizer | None = None
        self.train_ids: np.ndarray | None = None
        self.val_ids: np.ndarray | None = None

    # -- preparing -----------------------------------------------------------------------------

    def _source(self) -> Path:
        if self.path is not None:
            return Path(self.path)
        return prepare_named_corpus(self.corpus_name, self.data_dir)

    def _base_tokenizer(self):
        cfg = self.tokenizer_cfg
        return build_base_tokenizer(cfg.get("kind", "tiktoken"), cfg.get("encoding", "cl100k_base"))

    def prepare_data(self) -> None:
        """Fetch the corpus if it is a named one, and fill the token cache (Lightning: rank 0 only)."""
        if self.tokenizer is None:  # set up already means prepared already
            load_or_build_tokens(read_corpus(self._source()), self._base_tokenizer(), self.cache_dir, self.max_vocab)

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return  # already set up (the entry point sets up before building the model)
        base = self._base_tokenizer()
        tokens = load_or_build_tokens(read_corpus(self._source()), base, self.cache_dir, self.max_vocab)
        if self.tokenizer_cfg.get("corpus_vocab", True):
            self.tokenizer = CorpusVocabTokenizer(base, tokens.vocab)
            ids = tokens.ids
        else:
            self.tokenizer = base
            ids = tokens.base_ids().astype(np.uint32)
        n = len(ids)
        n_val = int(round(n * self.val_fraction))
        need = self.context_length + 1
        if n - n_val < need or n_val < need:
            raise DataError(
                f"corpus too short: {n} tokens split into {n - n_val} train / {n_val} val, but each split needs "
                f"at least data.context_length+1 = {need}; use more text, a smaller data.context_length "
                f"or another data.val_fraction"
            )
        self.train_ids, self.val_ids = ids[: n - n_val], ids[n - n_val :]
        log.info("data %s: %d train / %d val tokens, vocabulary %d", self.name, n - n_val, n_val, self.vocab_size)

    @property
    def vocab_size(self) -> int:
        if self.tokenizer is None:
            raise RuntimeError("call setup() first")
        return self.tokenizer.vocab_size

    # -- loaders -------------------------------------------------------------------------------

    def _pin_memory(self) -> bool:
        trainer = self.trainer
        return trainer is not None and trainer.strategy.root_device.type == "cuda"

    def _generator(self) -> torch.Generator:
        """A loader's own generator: each ``iter(loader)`` draws a seed from it, and without one
        that draw comes from the global RNG, shifting dropout's random numbers at every
        validation and making a resumed run (which restores the global RNG) differ."""
        return torch.Generator().manual_seed(self.seed)

    def train_dataloader(self) -> DataLoader:
        trainer = self.trainer
        num_batches, start, rank = None, 0, 0
        if trainer is not None:
            rank = trainer.global_rank
            if trainer.max_steps > 0:
                num_batches = trainer.max_steps * trainer.accumulate_grad_batches
            start = trainer.global_step * trainer.accumulate_grad_batches  # resume where we were
        dataset = RandomWindows(self.train_ids, self.context_length, self.batch_size, self.seed,
                                num_batches=num_batches, start=start, rank=rank)
        # The dataset yields whole batches (vectorised gather), so the loader does no batching.
        return DataLoader(dataset, batch_size=None, num_workers=self.num_workers, pin_memory=self._pin_memory(),
                          generator=self._generator())

    def val_dataloader(self) -> DataLoader:
        dataset = SequentialWindows(self.val_ids, self.context_length)
        return DataLoader(dataset, batch_size=self.batch_size, sampler=self._val_sampler(dataset),
                          shuffle=False, num_workers=self.num_workers, pin_memory=self._pin_memory(),
                          generator=self._generator())

    def _val_sampler(self, dataset: SequentialWindows) -> UnrepeatedDistributedSampler | None:
        """Under DDP, windows rank, rank+W, rank+2W, ... for each of the W processes: every window
        on exactly one process (Lightning's default DistributedSampler would pad with repeats)."""
        trainer = self.trainer
        if trainer is None or trainer.world_size == 1:
            return None
        if len(dataset) < trainer.world_size:
            raise DataError(
                f"the validation split has {len(dataset)} windows of data.context_length={self.context_length}, fewer "
                f"than the {trainer.world_size} processes; use more text, a larger data.val_fraction or fewer devices"
            )
        return UnrepeatedDistributedSampler(dataset, num_replicas=trainer.world_size, rank=trainer.global_rank,
                                            shuffle=False)
