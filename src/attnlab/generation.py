"""Autoregressive text generation: pick the next token from the logits, append, repeat.

``generate`` yields one new token per step for every sequence of the batch, so callers can stream
text as it is produced. Sampling choices:

- ``temperature=0``: greedy (always the most likely token);
- ``temperature>0``: sample from softmax(logits / temperature), optionally restricted to the
  ``top_k`` most likely tokens and/or the smallest set whose probability reaches ``top_p``.
"""

from __future__ import annotations

from typing import Iterator

import torch

from attnlab.model import GPT


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """Next token ids (B,) from the last position's logits (B, V)."""
    if temperature <= 0:
        return logits.argmax(dim=-1)  # (B,)
    logits = logits.float() / temperature  # (B, V)
    if top_k is not None and top_k > 0 and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1): the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and 0 < top_p < 1:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)  # (B, V)
        cumulative = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # (B, V)
        # drop a token when the tokens before it already reach top_p (the first one always stays)
        drop_sorted = (cumulative - sorted_logits.softmax(dim=-1)) >= top_p  # (B, V)
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)  # back to vocab order
        logits = logits.masked_fill(drop, float("-inf"))
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)  # (B,)


@torch.no_grad()
def generate(model: GPT, prompt: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             generator: torch.Generator | None = None) -> Iterator[torch.Tensor]:
    """Yield ``max_new_tokens`` steps of new ids (B,) continuing ``prompt`` (B, T0) or (T0,).

    The model sees at most its last ``context_length`` tokens.
    """
    idx = prompt if prompt.dim() == 2 else prompt.unsqueeze(0)  # (B, T0)
    Tmax = model.cfg.context_length
    for _ in range(max_new_tokens):
        window = idx[:, -Tmax:]  # (B, <=Tmax)
        logits = model(window)[:, -1, :]  # (B, V): the last position predicts the next token
        nxt = sample_next(logits, temperature, top_k, top_p, generator)  # (B,)
        idx = torch.cat([idx, nxt.unsqueeze(1)], dim=1)  # (B, T+1)
        yield nxt
