"""The encoder–decoder's output, searched token by token: beam search, and greedy search as its
one-beam case.

The source is encoded once; each step feeds only the new target token through the decoder,
whose :class:`~attnlab.model.transformer.DecoderCache` holds the earlier tokens' keys and values
and every layer's cross-attention keys and values of the source. Each source keeps ``beam_size``
hypotheses; a step extends every hypothesis by every token, and keeps the ``beam_size`` best
extensions by total log-probability. A hypothesis that has produced ``eos_id`` is finished: it
stays in the beam with its score, extended only by ``eos_id`` at no cost. The search stops when
every hypothesis is finished or the targets reach ``max_length`` tokens; the answer of each
source is its finished hypothesis with the best length-normalised score
``log p / length ** length_penalty`` (Wu et al. 2016's simpler form; 0 ranks by log p alone).

With ``beam_size=1`` each step keeps the single most likely token: greedy search, exactly.

Shapes: B = sources, K = beam_size, S = source length, L = tokens decoded so far, V = target vocab.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from attnlab.model.transformer import EncoderDecoder


@dataclass
class SearchResult:
    """Per source, the best output (ids up to and without EOS) and its total log-probability."""

    ids: list[list[int]]  # B lists of target ids, EOS not included
    log_prob: torch.Tensor  # (B,) the sum of the chosen tokens' log-probabilities, EOS included


@torch.no_grad()
def beam_search(
    model: EncoderDecoder,
    src: torch.Tensor,
    src_mask: torch.Tensor | None,
    bos_id: int,
    eos_id: int,
    max_length: int | None = None,
    beam_size: int = 1,
    length_penalty: float = 1.0,
) -> SearchResult:
    """The outputs of ``src`` (B, S) (``src_mask`` (B, S) True at real tokens), each at most
    ``max_length`` tokens (default: the decoder's context less the BOS)."""
    if beam_size < 1:
        raise ValueError(f"beam_size must be >= 1, got {beam_size}")
    was_training = model.training
    model.eval()
    try:
        return _search(model, src, src_mask, bos_id, eos_id, max_length, beam_size, length_penalty)
    finally:
        model.train(was_training)


def _search(model, src, src_mask, bos_id, eos_id, max_length, K, length_penalty) -> SearchResult:
    B, device = src.size(0), src.device
    limit = model.cfg.tgt_context_length - 1  # the BOS takes one position
    max_length = limit if max_length is None else min(max_length, limit)
    memory = model.encode(src, src_mask)  # (B, S, C)
    memory = memory.repeat_interleave(K, dim=0)  # (B*K, S, C): the K hypotheses of a source side by side
    mask = src_mask.repeat_interleave(K, dim=0) if src_mask is not None else None  # (B*K, S)
    cache = model.new_cache(B * K)

    tokens = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)  # (B*K, 1): BOS
    scores = torch.zeros(B, K, device=device)  # (B, K) total log-probability of each hypothesis
    scores[:, 1:] = float("-inf")  # at the start the K hypotheses are one: expand only the first
    finished = torch.zeros(B, K, dtype=torch.bool, device=device)  # (B, K) has produced EOS
    lengths = torch.zeros(B, K, device=device)  # (B, K) tokens up to and including EOS
    rows = torch.arange(B, device=device)[:, None] * K  # (B, 1): each source's first row in B*K

    for _ in range(max_length):
        logits = model.decode(tokens[:, -1:], memory, src_mask=mask, cache=cache)  # (B*K, 1, V)
        log_p = torch.log_softmax(logits[:, -1].float(), dim=-1).view(B, K, -1)  # (B, K, V)
        V = log_p.size(-1)
        # a finished hypothesis continues with EOS only, at no cost: it keeps its score
        done = torch.full_like(log_p, float("-inf"))  # (B, K, V)
        done[..., eos_id] = 0.0
        log_p = torch.where(finished[..., None], done, log_p)  # (B, K, V)
        candidates = (scores[..., None] + log_p).view(B, K * V)  # (B, K*V)
        scores, best = candidates.topk(K, dim=-1)  # (B, K) each: the K best extensions
        parent, token = best // V, best % V  # (B, K): which hypothesis, extended by which token

        order = (rows + parent).view(-1)  # (B*K,) the rows the survivors come from
        tokens = torch.cat([tokens[order], token.view(-1, 1)], dim=1)  # (B*K, L+1)
        cache.reorder(order)
        lengths = lengths.gather(1, parent) + (~finished.gather(1, parent)).float()  # (B, K)
        finished = finished.gather(1, parent) | (token == eos_id)  # (B, K)
        if finished.all():
            break

    normalised = scores / lengths.clamp(min=1) ** length_penalty  # (B, K)
    normalised = normalised.masked_fill(~finished, float("-inf"))  # a finished answer wins over a cut one
    unfinished = ~finished.any(dim=1)  # (B,) sources whose every hypothesis hit max_length
    normalised[unfinished] = scores[unfinished]
    pick = normalised.argmax(dim=1)  # (B,)
    chosen = tokens.view(B, K, -1)[torch.arange(B, device=device), pick, 1:]  # (B, L) without the BOS
    ids = []
    for row in chosen.tolist():
        ids.append(row[: row.index(eos_id)] if eos_id in row else row)
    return SearchResult(ids=ids, log_prob=scores[torch.arange(B, device=device), pick])
