"""Autoregressive text generation: pick the next token from the logits, append, repeat.

``generate`` yields one new token per step for every sequence of the batch, so callers can stream
text as it is produced. Sampling choices:

- ``temperature=0``: greedy (always the most likely token);
- ``temperature>0``: sample from softmax(logits / temperature), optionally restricted to the
  ``top_k`` most likely tokens and/or the smallest set whose probability reaches ``top_p``.

The model sees a window of at most ``context_length`` tokens (:class:`Decoder`). With the KV cache
(default) each step feeds only the new token; once the sequence outgrows the window, the window
moves ``slide`` tokens forward and the cache is refilled with the cropped window, whose tokens are
at positions 0.. again. Without the cache, every step runs the same window in full: same logits,
same text, more work.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from attnlab.errors import ConfigError
from attnlab.model.gpt import GPT


def sample_next(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
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


class Decoder:
    """The next-token logits of a growing batch of sequences, over a sliding window.

    The window is the last tokens of the sequence, at most ``context_length`` of them. When a new
    token would make it longer, it moves ``slide`` tokens forward (1: always the latest
    ``context_length`` tokens; default ``context_length // 4``, so the cache refills once per
    ``slide`` tokens instead of every token). ``next_logits`` and ``append`` alternate.
    """

    def __init__(self, model: GPT, prompt: torch.Tensor, use_cache: bool = True, slide: int | None = None):
        Tmax = model.cfg.context_length
        self.slide = max(1, Tmax // 4) if slide is None else slide
        if not isinstance(self.slide, int) or isinstance(self.slide, bool) or not 1 <= self.slide <= Tmax:
            raise ConfigError(f"slide must be an integer from 1 to context_length={Tmax}, got {slide!r}")
        self.model, self.Tmax = model, Tmax
        self.idx = prompt if prompt.dim() == 2 else prompt.unsqueeze(0)  # (B, L)
        if self.idx.size(1) == 0:
            raise ConfigError("the prompt is empty; give at least one token")
        self.start = max(0, self.idx.size(1) - Tmax)  # the window is idx[:, start:]
        self.cache = model.new_cache(self.idx.size(0)) if use_cache else None

    @property
    def window(self) -> torch.Tensor:
        return self.idx[:, self.start :]  # (B, W), W <= Tmax

    @torch.no_grad()
    def next_logits(self) -> torch.Tensor:
        """Logits (B, V) for the token after the window."""
        if self.cache is None:
            return self.model(self.window, last_only=True)[:, -1, :]  # the whole window: (B, V)
        unseen = self.window[:, self.cache.length :]  # (B, W - cached): the whole window after a reset
        return self.model(unseen, cache=self.cache, last_only=True)[:, -1, :]  # (B, V)

    def append(self, nxt: torch.Tensor) -> None:
        """Add the next ids (B,); slide the window when it would outgrow context_length."""
        self.idx = torch.cat([self.idx, nxt.view(-1, 1).to(self.idx.device)], dim=1)  # (B, L+1)
        if self.idx.size(1) - self.start > self.Tmax:
            self.start += self.slide
            if self.cache is not None:
                self.cache.reset()  # every kept token moved to a new position: recompute


@torch.no_grad()
def generate(
    model: GPT,
    prompt: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    *,
    use_cache: bool = True,
    slide: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield ``max_new_tokens`` steps of new ids (B,) continuing ``prompt`` (B, T0) or (T0,).

    The model sees at most its last ``context_length`` tokens (:class:`Decoder`); ``use_cache``
    and ``slide`` are passed to it.
    """
    decoder = Decoder(model, prompt, use_cache=use_cache, slide=slide)
    for _ in range(max_new_tokens):
        nxt = sample_next(decoder.next_logits(), temperature, top_k, top_p, generator)  # (B,)
        decoder.append(nxt)
        yield nxt
