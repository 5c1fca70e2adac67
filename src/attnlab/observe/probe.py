"""The probe: a short fixed text whose attention is drawn at each validation, and its weights.

The default probe is a line of the run's own validation text (:func:`default_probe`), so the maps
of every step, run and sweep job show the same tokens.
"""

from __future__ import annotations

import logging

import numpy as np
import torch

from attnlab.data.tokenizer import Tokenizer
from attnlab.model import GPT

log = logging.getLogger(__name__)

PROBE_MAX_TOKENS = 32  # the default probe: a val-split line of 8 to 32 tokens (labels fit on the axes)
PROBE_MIN_TOKENS = 8


def default_probe(tokenizer: Tokenizer, val_ids: np.ndarray, context_length: int) -> np.ndarray:
    """A short line of the validation text: the first run of 8 to 32 tokens (at most
    ``context_length``) between tokens holding a line break, else the text's first tokens.

    Lines are cut in token space, so the probe is made of the corpus's own ids (re-encoding a
    cut line could produce tokens the corpus vocabulary lacks).
    """
    longest = min(PROBE_MAX_TOKENS, context_length)
    line: list[int] = []
    for i in np.asarray(val_ids[:2048]).tolist():
        if "\n" not in tokenizer.decode([i]):
            line.append(i)
            continue
        if min(PROBE_MIN_TOKENS, longest) <= len(line) <= longest:
            return np.asarray(line)
        line = []
    return np.asarray(val_ids[:longest])


def probe_ids(text: str | None, tokenizer: Tokenizer, val_ids: np.ndarray | None, context_length: int) -> torch.Tensor:
    if text:
        ids = tokenizer.encode(text, respell=True)  # unseen tokens spelled with corpus ones, or one line
    elif val_ids is not None:
        ids = default_probe(tokenizer, val_ids, context_length)
    else:
        raise ValueError("no probe text and no validation split to take one from")
    if len(ids) == 0:
        raise ValueError("the probe text has no tokens")
    if len(ids) > context_length:
        log.warning("probe text has %d tokens; showing the first context_length=%d", len(ids), context_length)
        ids = ids[:context_length]
    return torch.from_numpy(np.asarray(ids, dtype=np.int64))  # (T,)


@torch.no_grad()
def probe_attention(model: GPT, ids: torch.Tensor) -> list[torch.Tensor]:
    """Attention weights of one sequence ``ids`` (T,): a list over layers of (nh, T, T) fp32 tensors."""
    was_training = model.training
    model.eval()  # no dropout on the weights we show
    try:
        device = next(model.parameters()).device
        idx = ids.to(device=device, dtype=torch.long).unsqueeze(0)  # (1, T)
        _, attentions = model(idx, impl="explicit", return_attention=True)  # num_layers x (1, nh, T, T)
    finally:
        model.train(was_training)
    return [w[0].float().cpu() for w in attentions]  # num_layers x (nh, T, T)
