"""(source, target) string pairs -> one vocabulary with PAD/BOS/EOS -> padded batches, as a LightningDataModule.

The data of the encoder–decoder (:mod:`attnlab.model.transformer`):

* the pairs are ``data.builtin=dates`` (:mod:`attnlab.data.dates`) or the file ``data.path``
  (:mod:`attnlab.data.pairs`), whose validation split is the last ``data.val_fraction`` of a
  permutation drawn with ``data.data_seed``: the pairs and the split never depend on the training seed;
* both sides are tokenized with ``data.tokenizer`` into one corpus vocabulary (the ids of every
  source and target), and :class:`Seq2SeqVocab` appends PAD, BOS and EOS after it;
* a pair is encoded as ``src`` (the source's ids, at most S = ``data.context_length``) and
  ``tgt`` = BOS + the target's ids + EOS; the decoder reads ``tgt[:-1]`` and predicts ``tgt[1:]``,
  so a target of n tokens takes n+1 <= T positions (T = ``data.context_length`` too). Longer pairs
  are an error, or with ``data.too_long=truncate`` are cut (a cut target has no EOS);
* training batches (:class:`BucketedPairs`) are pairs of similar length, padded to the longest in
  the batch; batch ``k`` of rank ``r`` depends only on ``(seed, r, k)``, so runs repeat and resume;
* validation takes every val pair exactly once, sorted by length, each on one DDP process.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from attnlab.checks import from_dict, is_int, require_choice, require_int
from attnlab.data.dates import date_pairs
from attnlab.data.loaders import loader, training_position, val_sampler
from attnlab.data.pair_vocab import Seq2SeqVocab
from attnlab.data.pairs import Pair, read_pairs
from attnlab.data.tokenizer import CorpusVocabTokenizer, Tokenizer, build_base_tokenizer
from attnlab.data.windows import IGNORE_INDEX
from attnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

BUILTINS = ("dates",)
TOO_LONG = ("error", "truncate")
# Training pairs are sorted by length in chunks of this many batches (1: no bucketing). Padding, of
# source / target positions at batch 64: data=dates 42% / 0% with 1, 1.4% / 0% with 50; 20,000
# pairs of 2-40 words, targets 0.7-1.3x as long, cl100k tokens: 47% / 55% with 1, 6.7% / 7.8% with 50.
BUCKET_BATCHES = 50

EncodedPair = tuple[np.ndarray, np.ndarray]  # src (<=S,) ids, tgt (<=T+1,) BOS + ids + EOS, int64


@dataclass
class Seq2SeqDataConfig:
    """``data.*`` of a pairs config (conf/data/dates.yaml, pairs.yaml), checked."""

    context_length: int  # S and T: the longest source, the longest target + 1 (BOS in, EOS out)
    batch_size: int  # pairs per step, per device
    kind: str = "pairs"  # tells a pairs config from a text one (DataConfig has no kind)
    builtin: str | None = None  # "dates": generated pairs; null: read data.path
    path: str | None = None  # .tsv/.txt (source<TAB>target) or .jsonl/.json, each also .gz
    source_field: str = "source"  # the fields of a .jsonl/.json record
    target_field: str = "target"
    num_pairs: int = 20_000  # builtin=dates only: how many pairs, train and val together
    data_seed: int = 0  # the generated pairs and the val split (not the training seed)
    val_fraction: float = 0.1
    too_long: str = "error"  # a pair longer than context_length: "error" | "truncate"
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"kind": "char"})  # conf/data/tokenizer/*.yaml
    num_workers: int = 0
    name: str | None = None  # shown in logs; default the builtin's name or the file's stem

    def __post_init__(self) -> None:
        if self.kind != "pairs":
            raise ConfigError(f"data.kind must be pairs in a config of (source, target) pairs, got {self.kind!r}")
        if self.builtin is not None:
            require_choice(self.builtin, "data.builtin", BUILTINS)
        if self.builtin is None and self.path is None:
            raise ConfigError("no pairs to train on; set data.path=/some/pairs.tsv (or .jsonl), or data.builtin=dates")
        if self.builtin is not None and self.path is not None:
            raise ConfigError(
                f"data.builtin={self.builtin} and data.path={self.path!r} are both set; set data.builtin=null to "
                f"train on data.path, or data.path=null"
            )
        require_int(self.context_length, "data.context_length", minimum=2)  # a target's token + BOS/EOS
        require_int(self.batch_size, "data.batch_size")
        require_int(self.num_pairs, "data.num_pairs", minimum=2)
        require_int(self.num_workers, "data.num_workers", minimum=0)
        if not is_int(self.data_seed):
            raise ConfigError(f"data.data_seed must be an integer, got {self.data_seed!r}")
        if not isinstance(self.val_fraction, (int, float)) or not 0.0 < float(self.val_fraction) < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        self.val_fraction = float(self.val_fraction)
        require_choice(self.too_long, "data.too_long", TOO_LONG)
        for key in ("source_field", "target_field"):
            if not isinstance(getattr(self, key), str) or not getattr(self, key):
                raise ConfigError(f"data.{key} must name a field of the records, got {getattr(self, key)!r}")
        self.tokenizer = dict(self.tokenizer)
        require_choice(self.tokenizer.get("kind", "tiktoken"), "data.tokenizer.kind", ("char", "tiktoken"))
        if self.tokenizer.get("kind") == "char" and not self.tokenizer.get("corpus_vocab", True):
            raise ConfigError(
                "data.tokenizer.corpus_vocab=false does not apply to data/tokenizer=char (its vocabulary is the "
                "pairs' characters); drop the override"
            )
        if self.tokenizer.get("max_vocab") is not None:
            raise ConfigError("data.tokenizer.max_vocab caps text data's vocabulary, not pairs'; set it to null")
        if self.name is None:
            self.name = self.builtin or Path(str(self.path).removesuffix(".gz")).stem

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Seq2SeqDataConfig:
        return from_dict(cls, values, "data")


class Seq2SeqBatch(NamedTuple):
    """A padded batch (a NamedTuple: Lightning moves it to the device as it is)."""

    src: torch.Tensor  # (B, S) long, pad_id at padding
    src_mask: torch.Tensor  # (B, S) bool, True at real tokens
    tgt_in: torch.Tensor  # (B, T) long: BOS + target, pad_id at padding
    tgt_out: torch.Tensor  # (B, T) long: target + EOS, IGNORE_INDEX at padding
    tgt_mask: torch.Tensor  # (B, T) bool, True at real tokens


def collate(pairs: Sequence[EncodedPair], pad_id: int) -> Seq2SeqBatch:
    """Pairs padded to the longest source (S) and target (T) among them."""
    src_len = np.array([len(s) for s, _ in pairs])  # (B,)
    tgt_len = np.array([len(t) - 1 for _, t in pairs])  # (B,) positions: BOS + target in, target + EOS out
    src = np.full((len(pairs), src_len.max()), pad_id, dtype=np.int64)  # (B, S)
    tgt = np.full((len(pairs), tgt_len.max() + 1), pad_id, dtype=np.int64)  # (B, T+1)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = s
        tgt[i, : len(t)] = t
    src_mask = np.arange(src.shape[1]) < src_len[:, None]  # (B, S)
    tgt_mask = np.arange(tgt.shape[1] - 1) < tgt_len[:, None]  # (B, T)
    tgt_in = np.where(tgt_mask, tgt[:, :-1], pad_id)  # (B, T) EOS of a shorter target -> pad
    tgt_out = np.where(tgt_mask, tgt[:, 1:], IGNORE_INDEX)  # (B, T)
    return Seq2SeqBatch(*(torch.from_numpy(a) for a in (src, src_mask, tgt_in, tgt_out, tgt_mask)))


class BucketedPairs(IterableDataset):
    """Training batches of pairs of similar length; batch ``k`` is a pure function of ``(seed, rank, k)``.

    Epoch ``e = k // (N // B)`` permutes the N pairs with ``(seed, rank, e)``, sorts each chunk of
    ``bucket_batches`` batches by the longer side's length (then the source's, the target's), cuts
    it into batches and shuffles the batches: each pair once an epoch (but the ``N mod B`` left
    over), beside pairs of its length.
    """

    def __init__(
        self,
        pairs: Sequence[EncodedPair],
        batch_size: int,
        pad_id: int,
        seed: int,
        num_batches: int | None = None,
        start: int = 0,
        rank: int = 0,
        bucket_batches: int = BUCKET_BATCHES,
    ):
        if len(pairs) < batch_size:
            raise DataError(
                f"the train split has {len(pairs)} pairs, fewer than data.batch_size={batch_size}; use more pairs "
                f"or a smaller data.batch_size"
            )
        self.pairs, self.B, self.pad_id = pairs, batch_size, pad_id
        self.seed, self.rank, self.num_batches, self.start = seed, rank, num_batches, start
        self.bucket_batches = bucket_batches
        self.src_len = np.array([len(s) for s, _ in pairs])  # (N,)
        self.tgt_len = np.array([len(t) - 1 for _, t in pairs])  # (N,) positions
        self.per_epoch = len(pairs) // batch_size
        self._epoch: tuple[int, np.ndarray] | None = None  # the last epoch's batches, cached

    def epoch(self, e: int) -> np.ndarray:
        """(N // B, B) the pair indices of epoch ``e``'s batches, in order."""
        if self._epoch is None or self._epoch[0] != e:
            rng = np.random.default_rng((self.seed, self.rank, e))
            order = rng.permutation(len(self.pairs))[: self.per_epoch * self.B]  # (n,)
            chunk = np.arange(len(order)) // (self.bucket_batches * self.B)  # (n,) the chunk of each place
            src, tgt = self.src_len[order], self.tgt_len[order]  # (n,), (n,)
            order = order[np.lexsort((tgt, src, np.maximum(src, tgt), chunk))]  # (n,) sorted within each chunk
            batches = order.reshape(self.per_epoch, self.B)  # (N // B, B)
            self._epoch = (e, batches[rng.permutation(self.per_epoch)])
        return self._epoch[1]

    def batch(self, k: int) -> Seq2SeqBatch:
        e, j = divmod(k, self.per_epoch)
        return collate([self.pairs[i] for i in self.epoch(e)[j]], self.pad_id)

    def __iter__(self) -> Iterator[Seq2SeqBatch]:
        """Batches ``start``, ``start+1``, ...: with W loader workers, worker w makes every W-th one
        and the loader takes them in turn, so the order is the same with any number of workers."""
        worker = get_worker_info()
        k, step = (self.start, 1) if worker is None else (self.start + worker.id, worker.num_workers)
        while self.num_batches is None or k < self.num_batches:
            yield self.batch(k)
            k += step

    def __len__(self) -> int:
        """``num_batches``, also when resuming at ``start`` (as :meth:`RandomWindows.__len__`)."""
        if self.num_batches is None:
            raise TypeError("an unbounded BucketedPairs has no length")
        return self.num_batches


class Seq2SeqDataModule(L.LightningDataModule):
    """Pairs -> vocabulary -> encoded, length-checked pairs -> bucketed train / sorted val batches.

    ``Seq2SeqDataModule(seed=..., data_dir=..., **data)`` takes the keys of ``data.*``
    (:class:`Seq2SeqDataConfig`); ``seed`` orders the training batches; ``data_dir`` is accepted
    as :class:`TextDataModule` takes it, and unused (the pairs are generated or read from data.path).
    """

    def __init__(self, *, seed: int = 0, data_dir: str = "data", **data: Any):
        super().__init__()
        self.cfg = Seq2SeqDataConfig.from_dict(data)
        self.seed, self.data_dir = seed, data_dir
        self.vocab: Seq2SeqVocab | None = None
        self.train_pairs: list[EncodedPair] | None = None
        self.val_pairs: list[EncodedPair] | None = None  # in validation's order
        self.val_texts: list[Pair] | None = None  # the val pairs' strings, in validation's order

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Seq2SeqDataModule:
        """The data of a run's composed (or saved) config: ``data.*``, ``seed``, ``paths.data_dir``."""
        data = OmegaConf.to_container(cfg.data, resolve=True)
        return cls(**data, seed=cfg.seed, data_dir=cfg.paths.data_dir)

    @property
    def name(self) -> str:
        return self.cfg.name

    @property
    def vocab_size(self) -> int:
        if self.vocab is None:
            raise RuntimeError("call setup() first")
        return self.vocab.vocab_size

    @property
    def src_context_length(self) -> int:
        return self.cfg.context_length

    @property
    def tgt_context_length(self) -> int:
        return self.cfg.context_length

    # -- preparing -----------------------------------------------------------------------------

    def _texts(self) -> tuple[list[Pair], list[Pair]]:
        """The train and val pairs as strings; one line when either split is empty."""
        cfg = self.cfg
        if cfg.builtin == "dates":
            train, val = date_pairs(cfg.num_pairs, cfg.val_fraction, cfg.data_seed)
            what, more = f"data.num_pairs={cfg.num_pairs}", "raise data.num_pairs"
        else:
            pairs = read_pairs(cfg.path, cfg.source_field, cfg.target_field)
            order = np.random.default_rng(cfg.data_seed).permutation(len(pairs))  # (N,)
            n_train = len(pairs) - int(round(len(pairs) * cfg.val_fraction))
            train, val = [pairs[i] for i in np.sort(order[:n_train])], [pairs[i] for i in order[n_train:]]
            what, more = f"data.path {cfg.path!r} has {len(pairs)} pairs", "add pairs"
            seen = {source for source, _ in train}
            if shared := sum(source in seen for source, _ in val):
                log.warning("%d of %d val pairs have a source that training pairs have too", shared, len(val))
        if not train or not val:
            raise DataError(
                f"{what}: {len(train)} train / {len(val)} val at data.val_fraction={cfg.val_fraction}; {more} or "
                f"change data.val_fraction"
            )
        return train, val

    def setup(self, stage: str | None = None) -> None:
        if self.vocab is not None:
            return  # already set up (the entry point sets up before building the model)
        train, val = self._texts()
        kind = self.cfg.tokenizer.get("kind", "tiktoken")
        base = build_base_tokenizer(kind, self.cfg.tokenizer.get("encoding", "cl100k_base"))
        pieces = base.encode_batch([side for pair in train + val for side in pair])  # source, target, source, ...
        ids = np.concatenate(pieces).astype(np.int64)  # (all tokens,)
        tokenizer: Tokenizer = base
        if self.cfg.tokenizer.get("corpus_vocab", True):
            tokenizer = CorpusVocabTokenizer(base, CorpusVocabTokenizer.vocab_of(ids, base.vocab_size))
            ids = tokenizer.to_dense(ids)
        self.vocab = vocab = Seq2SeqVocab(tokenizer)
        pieces = np.split(ids, np.cumsum([len(p) for p in pieces])[:-1])
        bos, eos = np.array([vocab.bos_id]), np.array([vocab.eos_id])
        encoded = self._fit([(s, np.concatenate([bos, t, eos])) for s, t in zip(pieces[::2], pieces[1::2])])
        self.train_pairs = encoded[: len(train)]
        val_pairs = encoded[len(train) :]
        src, tgt = np.array([len(s) for s, _ in val_pairs]), np.array([len(t) for _, t in val_pairs])  # (n,)
        order = np.lexsort((tgt, src, np.maximum(src, tgt - 1)))  # as the training batches' buckets
        self.val_pairs = [val_pairs[i] for i in order]
        self.val_texts = [val[i] for i in order]
        sizes = (self.name, len(train), len(val), tokenizer.vocab_size)
        log.info("data %s: %d train / %d val pairs, vocabulary %d + <pad> <s> </s>", *sizes)

    def _fit(self, pairs: list[EncodedPair]) -> list[EncodedPair]:
        """The pairs within data.context_length (C): a source of <= C tokens, a target of <= C-1 (+ BOS/EOS)."""
        C = self.cfg.context_length
        src_len = np.array([len(s) for s, _ in pairs])  # (N,)
        tgt_len = np.array([len(t) - 1 for _, t in pairs])  # (N,) positions: target + 1
        too_long = int(np.count_nonzero((src_len > C) | (tgt_len > C)))
        if not too_long:
            return pairs
        longest = f"the longest: a source of {src_len.max()} tokens, a target of {tgt_len.max() - 1} (+ BOS/EOS)"
        if self.cfg.too_long == "error":
            raise DataError(
                f"{too_long} of {len(pairs)} pairs do not fit data.context_length={C} ({longest}); set "
                f"data.context_length={max(src_len.max(), tgt_len.max())}, or data.too_long=truncate to cut them"
            )
        log.warning("cut %d of %d pairs to data.context_length=%d (%s)", too_long, len(pairs), C, longest)
        return [(s[:C], t[: C + 1]) for s, t in pairs]

    # -- loaders -------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        num_batches, start, rank = training_position(self.trainer)
        pairs, pad_id = self.train_pairs, self.vocab.pad_id
        dataset = BucketedPairs(pairs, self.cfg.batch_size, pad_id, self.seed, num_batches, start, rank)
        return loader(dataset, self.trainer, self.seed, self.cfg.num_workers, batch_size=None)  # whole batches

    def val_dataloader(self) -> DataLoader:
        collate_fn = partial(collate, pad_id=self.vocab.pad_id)
        sampler = val_sampler(
            self.val_pairs, self.trainer, "pairs", "use more pairs, a larger data.val_fraction, or fewer devices"
        )
        return loader(
            self.val_pairs,
            self.trainer,
            self.seed,
            self.cfg.num_workers,
            batch_size=self.cfg.batch_size,
            sampler=sampler,
            collate_fn=collate_fn,
        )
