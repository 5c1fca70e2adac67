"""Corpus -> token ids (cached once) -> sliding-window batches, as a LightningDataModule.

The seed notebooks' batching, made exact and reproducible:

* every window is ``x = ids[i : i+T]``, ``y = ids[i+1 : i+T+1]`` (``y`` is ``x`` shifted by one);
* training draws random offsets ``i``; batch ``k`` of rank ``r`` depends only on ``(seed, r, k)``,
  so a run is reproducible and can resume mid-stream;
* validation walks fixed, non-overlapping windows over the val split, or over its first
  ``data.val_tokens`` tokens when the split is longer (the same prefix every time). Every token
  validated after the first is predicted exactly once (the last, shorter window is padded with
  targets that the loss ignores), so val figures are exact and comparable between runs. Under DDP
  each window goes to exactly one process and the metric sums are added across processes.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader

from attnlab.checks import from_dict, is_int, require_int
from attnlab.data.corpus import open_corpus, prepare_named_corpus
from attnlab.data.hf_datasets import open_hf_corpus
from attnlab.data.loaders import loader, training_position, val_sampler
from attnlab.data.token_cache import load_or_build_tokens
from attnlab.data.token_file import TokenizedCorpus
from attnlab.data.tokenizer import CorpusVocabTokenizer, Tokenizer, build_base_tokenizer
from attnlab.data.windows import RandomWindows, SequentialWindows
from attnlab.errors import CheckpointError, ConfigError, DataError
from attnlab.runs import layout

log = logging.getLogger(__name__)


@dataclass
class DataConfig:
    """``data.*`` (conf/data/*.yaml), checked: what text, how it is tokenized and batched."""

    context_length: int  # T: tokens per window (the model reads it from here)
    batch_size: int  # windows per step, per device
    tokenizer: dict[str, Any] = field(default_factory=lambda: {"kind": "tiktoken"})  # conf/data/tokenizer/*.yaml
    corpus: str | None = None  # a named corpus under paths.data_dir; ignored when path or hf_dataset is set
    path: str | None = None  # a file or a folder: .txt, .md, .jsonl/.json, .parquet, each also .gz
    text_field: str = "text"  # the field of a .jsonl/.json record, the column of a .parquet, holding the text
    hf_dataset: str | None = None  # a Hugging Face dataset (a save_to_disk folder or a Hub name) instead of path
    hf_split: str = "train"  # its split
    cache_dir: str = "data/cache"  # token ids, keyed by the files' manifest (path, size, mtime) and tokenizer
    num_proc: int | None = None  # processes that tokenize a corpus's first build; None: the cores available
    val_fraction: float = 0.1  # the last fraction of the tokens is the validation split
    val_tokens: int | None = 1_000_000  # validate on the split's first N tokens; None: the whole split
    num_workers: int = 0
    name: str | None = None  # shown in logs; default the file's stem or the corpus name

    def __post_init__(self) -> None:
        if self.path is None and self.corpus is None and self.hf_dataset is None:
            raise ConfigError(
                "no text to train on; set data.path=/some/file.txt (or a folder), data.corpus=shakespeare or data.hf_dataset=<name or folder>"
            )
        if self.hf_dataset is not None and (not isinstance(self.hf_dataset, str) or not self.hf_dataset):
            raise ConfigError(
                f"data.hf_dataset must name a dataset (or a save_to_disk folder), got {self.hf_dataset!r}"
            )
        if self.hf_dataset is not None and self.path is not None:
            raise ConfigError("data.path and data.hf_dataset both name the text; set one of them (the other null)")
        if not isinstance(self.hf_split, str) or not self.hf_split:
            raise ConfigError(f"data.hf_split must name a split of data.hf_dataset (e.g. train), got {self.hf_split!r}")
        require_int(self.context_length, "data.context_length")
        require_int(self.batch_size, "data.batch_size")
        require_int(self.num_workers, "data.num_workers", minimum=0)
        require_int(self.num_proc, "data.num_proc", allow_none=True)
        if not isinstance(self.val_fraction, (int, float)) or not 0.0 < float(self.val_fraction) < 1.0:
            raise ConfigError(f"data.val_fraction must be in (0, 1), got {self.val_fraction!r}")
        self.val_fraction = float(self.val_fraction)
        self._check_val_tokens()
        if not isinstance(self.text_field, str) or not self.text_field:
            raise ConfigError(
                f"data.text_field must name the field that holds the text (e.g. text), got {self.text_field!r}"
            )
        self.tokenizer = dict(self.tokenizer)
        if self.name is None:
            source = self.path or self.hf_dataset
            self.name = Path(str(source)).stem if source is not None else self.corpus
        kind = self.tokenizer.get("kind", "tiktoken")
        if kind == "char" and not self.corpus_vocab:
            raise ConfigError(
                "data.tokenizer.corpus_vocab=false does not apply to data/tokenizer=char (its vocabulary "
                "is the corpus's characters); drop the override"
            )
        if self.max_vocab is not None:
            if kind != "tiktoken" or not self.corpus_vocab:
                raise ConfigError(
                    "data.tokenizer.max_vocab caps the corpus vocabulary of a tiktoken tokenizer (its rarer "
                    "tokens spelled with single bytes); use it with data/tokenizer=tiktoken and "
                    "corpus_vocab=true, or drop it"
                )
            if not is_int(self.max_vocab) or self.max_vocab <= 256:
                raise ConfigError(
                    f"data.tokenizer.max_vocab={self.max_vocab!r} leaves no room beside the 256 single-byte "
                    "fallback tokens; use an integer above 256 (e.g. 4096) or null"
                )

    def _check_val_tokens(self) -> None:
        one_window = self.context_length + 1
        if self.val_tokens is None:
            return
        if not is_int(self.val_tokens):
            raise ConfigError(
                f"data.val_tokens must be a number of tokens (an integer >= {one_window}) or null for the whole "
                f"val split, got {self.val_tokens!r}"
            )
        if self.val_tokens < one_window:
            raise ConfigError(
                f"data.val_tokens={self.val_tokens} is shorter than one window of data.context_length+1 = "
                f"{one_window} tokens; use an integer >= {one_window}, or null for the whole val split"
            )

    @property
    def corpus_vocab(self) -> bool:
        return bool(self.tokenizer.get("corpus_vocab", True))

    @property
    def max_vocab(self) -> int | None:
        return self.tokenizer.get("max_vocab")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> DataConfig:
        return from_dict(cls, values, "data")


class TextDataModule(L.LightningDataModule):
    """Corpus -> tokenizer -> cached ids -> train/val split by position -> window batches.

    ``TextDataModule(seed=..., data_dir=..., **data)`` takes the keys of ``data.*``
    (:class:`DataConfig`); :meth:`from_config` builds it from a run's whole config.
    """

    def __init__(self, *, seed: int = 0, data_dir: str = "data", **data: Any):
        super().__init__()
        self.cfg = DataConfig.from_dict(data)
        self.seed, self.data_dir = seed, data_dir
        self.tokenizer: Tokenizer | None = None
        self.train_ids: np.ndarray | None = None
        self.val_ids: np.ndarray | None = None

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TextDataModule:
        """The data of a run's composed (or saved) config: ``data.*``, ``seed``, ``paths.data_dir``."""
        data = OmegaConf.to_container(cfg.data, resolve=True)
        return cls(**data, seed=cfg.seed, data_dir=cfg.paths.data_dir)

    # -- preparing -----------------------------------------------------------------------------

    def _source(self) -> Path:
        if self.cfg.path is not None:
            return Path(self.cfg.path)
        return prepare_named_corpus(self.cfg.corpus, self.data_dir)

    def _corpus(self):
        """The files of ``data.path`` or the named corpus, or the dataset of ``data.hf_dataset`` (before both)."""
        if self.cfg.hf_dataset is not None:
            return open_hf_corpus(self.cfg.hf_dataset, self.cfg.hf_split, self.cfg.text_field)
        return open_corpus(self._source(), self.cfg.text_field)

    def _base_tokenizer(self):
        tokenizer = self.cfg.tokenizer
        return build_base_tokenizer(tokenizer.get("kind", "tiktoken"), tokenizer.get("encoding", "cl100k_base"))

    def _tokens(self, base) -> TokenizedCorpus:
        cfg = self.cfg
        return load_or_build_tokens(self._corpus(), base, cfg.cache_dir, cfg.max_vocab, cfg.corpus_vocab, cfg.num_proc)

    def prepare_data(self) -> None:
        """Fetch the corpus if it is a named one, and fill the token cache (Lightning: rank 0 only)."""
        if self.tokenizer is None:  # set up already means prepared already
            self._tokens(self._base_tokenizer())

    def setup(self, stage: str | None = None) -> None:
        if self.tokenizer is not None:
            return  # already set up (the entry point sets up before building the model)
        base = self._base_tokenizer()
        tokens = self._tokens(base)
        self.tokenizer = CorpusVocabTokenizer(base, tokens.vocab) if self.cfg.corpus_vocab else base
        ids = tokens.ids  # (N,) read-only np.memmap: every process shares the page cache
        n = len(ids)
        n_val = int(round(n * self.cfg.val_fraction))
        need = self.cfg.context_length + 1
        if n - n_val < need or n_val < need:
            raise DataError(
                f"corpus too short: {n} tokens split into {n - n_val} train / {n_val} val, but each split needs "
                f"at least data.context_length+1 = {need}; use more text, a smaller data.context_length "
                f"or another data.val_fraction"
            )
        self.train_ids = ids[: n - n_val]  # (N - n_val,) views of the memmap, no copies
        # What validation walks, and what the tools rebuild (attnlab eval, attend): the val split's
        # first data.val_tokens tokens, all of a shorter split; the rest of the split is held out.
        self.val_ids = ids[n - n_val :][: self.cfg.val_tokens]  # (min(n_val, val_tokens),)
        log.info("data %s: %d train / %d val tokens, vocabulary %d", self.name, n - n_val, n_val, self.vocab_size)
        if len(self.val_ids) < n_val:
            log.info("validating on the first %d of %d val tokens (data.val_tokens)", len(self.val_ids), n_val)

    @property
    def name(self) -> str:
        """The corpus's name in logs: ``data.name``, else the file's stem or the corpus name."""
        return self.cfg.name

    @property
    def vocab_size(self) -> int:
        if self.tokenizer is None:
            raise RuntimeError("call setup() first")
        return self.tokenizer.vocab_size

    # -- loaders -------------------------------------------------------------------------------

    def train_dataloader(self) -> DataLoader:
        num_batches, start, rank = training_position(self.trainer)
        dataset = RandomWindows(
            self.train_ids,
            self.cfg.context_length,
            self.cfg.batch_size,
            self.seed,
            num_batches=num_batches,
            start=start,
            rank=rank,
        )
        # The dataset yields whole batches (vectorised gather), so the loader does no batching.
        return loader(dataset, self.trainer, self.seed, self.cfg.num_workers, batch_size=None)

    def val_dataloader(self) -> DataLoader:
        dataset = SequentialWindows(self.val_ids, self.cfg.context_length)  # capped (setup) before sharding
        sampler = val_sampler(
            dataset,
            self.trainer,
            f"windows of data.context_length={self.cfg.context_length}",
            "use more text, a larger data.val_fraction or data.val_tokens, or fewer devices",
        )
        return loader(
            dataset, self.trainer, self.seed, self.cfg.num_workers, batch_size=self.cfg.batch_size, sampler=sampler
        )


def run_validation_ids(run_dir: Path, tokenizer: Tokenizer, instead: str) -> np.ndarray:
    """The validation split of the run in ``run_dir``, rebuilt from its ``config.yaml``, checked
    against the checkpoint's ``tokenizer``; ``instead`` is the fix the error lines offer."""
    config = layout.config_file(run_dir)
    if not config.is_file():
        raise CheckpointError(f"no {layout.CONFIG_FILE} in {run_dir} to rebuild the run's validation split; {instead}")
    datamodule = TextDataModule.from_config(OmegaConf.load(config))
    datamodule.setup("validate")
    if not _same_vocabulary(datamodule.tokenizer, tokenizer):
        raise DataError(
            f"the corpus of {run_dir} has changed since training (its vocabulary differs from the "
            f"checkpoint's); {instead}"
        )
    return datamodule.val_ids


def _same_vocabulary(a: Tokenizer, b: Tokenizer) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    if sa.keys() != sb.keys():
        return False
    return all(torch.equal(sa[k], sb[k]) if isinstance(sa[k], torch.Tensor) else sa[k] == sb[k] for k in sa)
