"""The vocabulary of source/target pairs: a tokenizer's ids, then PAD, BOS and EOS.

Kept apart from the pairs' data module (:mod:`attnlab.data.seq2seq`, which needs Lightning) so
that the tools that read an encoder–decoder checkpoint (``attnlab generate source=...``) start
without Lightning.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from attnlab.data.tokenizer import Tokenizer, tokenizer_from_state
from attnlab.data.windows import IGNORE_INDEX
from attnlab.errors import DataError

SPECIALS = ("<pad>", "<s>", "</s>")  # pad_id, bos_id, eos_id: the ids after the tokenizer's


class Seq2SeqVocab:
    """A tokenizer's ids 0..V-1 and three special ids after them: ``pad_id`` = V, ``bos_id`` = V+1,
    ``eos_id`` = V+2 (``vocab_size`` = V+3), for both source and target."""

    kind = "seq2seq"

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer
        self.pad_id, self.bos_id, self.eos_id = (tokenizer.vocab_size + i for i in range(len(SPECIALS)))
        self.vocab_size = tokenizer.vocab_size + len(SPECIALS)

    def encode(self, text: str, respell: bool = False) -> np.ndarray:
        """(n,) int64 ids of ``text``, no specials; ``respell`` as :meth:`CorpusVocabTokenizer.encode`."""
        return np.asarray(self.tokenizer.encode(text, respell=respell), dtype=np.int64)

    def decode(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> str:
        """The text of ``ids`` up to the first EOS, PAD, BOS (and IGNORE_INDEX: a row of tgt_out) skipped."""
        ids = torch.as_tensor(ids).reshape(-1).tolist()
        if self.eos_id in ids:
            ids = ids[: ids.index(self.eos_id)]
        return self.tokenizer.decode([i for i in ids if i not in (self.pad_id, self.bos_id, IGNORE_INDEX)])

    def token_strings(self, ids: Sequence[int] | np.ndarray | torch.Tensor) -> list[str]:
        """One string per id (attention-map labels): its text, or ``<pad>``, ``<s>``, ``</s>``."""
        ids, size = torch.as_tensor(ids).reshape(-1).tolist(), self.tokenizer.vocab_size
        return [SPECIALS[i - size] if i >= size else self.tokenizer.decode([i]) for i in ids]

    def state_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "tokenizer": self.tokenizer.state_dict()}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Seq2SeqVocab:
        """The vocabulary :meth:`state_dict` describes (as checkpoints store it), the same ids."""
        if state.get("kind") != cls.kind:
            raise DataError(f"not a seq2seq vocabulary (kind {state.get('kind')!r}); was the checkpoint a GPT's?")
        return cls(tokenizer_from_state(state["tokenizer"]))
