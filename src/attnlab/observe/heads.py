"""What each head does, as numbers: per-head attention scores, and the run's in-context score.

Each score is one number per layer and head, an (L, nh) tensor, computed from the attention
pattern p (B, nh, T, T) that the hook ``blocks.{i}.attn.pattern`` returns (query i, key j <= i).
The pattern scores average over the queries i = 1..T-1 of fixed text windows (query 0 can only
look at itself) and over the batch:

    entropy      -sum_j p_ij log p_ij                 in nats; 0: one key, log(i+1): uniform
    distance     sum_j p_ij (i - j)                   how far back the head looks, in tokens
    prev_token   p_{i, i-1}                           the previous token
    first_token  p_{i, 0}                             the first token (an "attention sink")
    self         p_{i, i}                             the token itself

The repeated-random-tokens probe scores: R random ids r_1..r_R, then the same R again (B, 2R).
For each query i of the second copy (R <= i < 2R):

    induction    p_{i, i-R+1}   the token after the earlier copy of the current token: the head
                                that completes "A B ... A -> B" (Olsson et al. 2022)
    duplicate    p_{i, i-R}     the earlier copy of the current token itself

One number per run: ``in_context``, how much a long context helps, measured on the same tokens:
each token is predicted once from a late position of a window (the last tenth, k = T/10
positions) and once from an early one (k positions from T/20, at least 1), in a second window
that starts d = late start - early start tokens later. ``in_context`` is the mean of (late loss -
early loss): below 0 when a long context predicts better; it falls when induction heads form
(Olsson et al. 2022 compare the 500th token with the 50th). Pairing the tokens removes the
differences between the tokens that happen to sit at two positions, which over a few dozen
windows are larger than the effect (about a nat at one position).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from attnlab.model import GPT

PATTERN_SCORES = ("entropy", "distance", "prev_token", "first_token", "self")
REPEAT_SCORES = ("induction", "duplicate")
SCORES = PATTERN_SCORES + REPEAT_SCORES


def _patterns(model: GPT, ids: torch.Tensor) -> torch.Tensor:
    """Every layer's attention pattern of ``ids`` (B, T), in fp32: (L, B, nh, T, T)."""
    names = [f"blocks.{i}.attn.pattern" for i in range(model.cfg.num_layers)]
    _, cache = model.run_with_cache(ids, names=names)
    return torch.stack([cache[name].float() for name in names])


def pattern_scores(patterns: torch.Tensor) -> dict[str, torch.Tensor]:
    """The scores of :data:`PATTERN_SCORES` from patterns (L, B, nh, T, T): {name: (L, nh)}."""
    T = patterns.size(-1)
    i = torch.arange(T, device=patterns.device)
    p = patterns[..., 1:, :]  # (L, B, nh, T-1, T): queries 1..T-1
    rows = i[1:]  # the query positions
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum(-1)  # (L, B, nh, T-1)
    distance = (p * (rows[:, None] - i[None, :]).clamp_min(0)).sum(-1)  # (L, B, nh, T-1)
    per_query = {
        "entropy": entropy,
        "distance": distance,
        "prev_token": p[..., rows - 1, rows - 1],  # p[i, i-1], i = rows: (L, B, nh, T-1)
        "first_token": p[..., 0],
        "self": patterns[..., rows, rows],
    }
    return {name: value.mean(dim=(1, 3)) for name, value in per_query.items()}  # (L, nh)


def repeated_random_tokens(vocab_size: int, length: int, batch: int, seed: int = 0) -> torch.Tensor:
    """``batch`` sequences of ``length`` // 2 random ids, each repeated once: (batch, 2R)."""
    R = length // 2
    first = torch.randint(0, vocab_size, (batch, R), generator=torch.Generator().manual_seed(seed))
    return torch.cat([first, first], dim=1)  # (B, 2R)


def repeat_scores(patterns: torch.Tensor) -> dict[str, torch.Tensor]:
    """``induction`` and ``duplicate`` from the patterns (L, B, nh, 2R, 2R) of repeated tokens."""
    R = patterns.size(-1) // 2
    queries = torch.arange(R, 2 * R, device=patterns.device)  # the second copy
    return {
        "induction": patterns[..., queries, queries - R + 1].mean(dim=(1, 3)),  # (L, nh)
        "duplicate": patterns[..., queries, queries - R].mean(dim=(1, 3)),
    }


@torch.no_grad()
def head_scores(model: GPT, text: torch.Tensor, repeated: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every score of :data:`SCORES`: {name: (L, nh)}, from text windows (B, T) and repeated
    random tokens (B, 2R) (:func:`repeated_random_tokens`). The model is left as it was."""
    was_training = model.training
    model.eval()
    try:
        return {**pattern_scores(_patterns(model, text)), **repeat_scores(_patterns(model, repeated))}
    finally:
        model.train(was_training)


@torch.no_grad()
def position_losses(model: GPT, windows: torch.Tensor) -> torch.Tensor:
    """Next-token loss at each position of ``windows`` (B, T+1) (inputs :T, targets 1:): (B, T)."""
    was_training = model.training
    model.eval()
    try:
        logits = model(windows[:, :-1]).float()  # (B, T, V)
    finally:
        model.train(was_training)
    return F.cross_entropy(logits.transpose(1, 2), windows[:, 1:], reduction="none")  # (B, T)


def in_context_bands(T: int) -> tuple[range, range]:
    """``(early, late)``: the k = max(1, T/10) positions from max(1, T/20), and the last k."""
    k = max(1, T // 10)
    start = max(1, T // 20)
    return range(start, start + k), range(T - k, T)


def in_context_shift(T: int) -> int:
    """d: how much later the second window of a pair starts (a token at late position p of the
    first is at early position p - d of the second)."""
    early, late = in_context_bands(T)
    return late.start - early.start


def in_context_pairs(spans: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The window pairs of ``spans`` (N, T+1+d): ``(first, second)``, each (N, T+1)."""
    d = in_context_shift(T)
    return spans[:, : T + 1], spans[:, d : d + T + 1]


def in_context_score(first_losses: torch.Tensor, second_losses: torch.Tensor) -> float:
    """Mean over the paired tokens of (loss from the first window's late band - loss from the
    second window's early band), from :func:`position_losses` of each (N, T)."""
    early, late = in_context_bands(first_losses.size(1))
    late_loss = first_losses[:, late.start : late.stop]  # (N, k)
    early_loss = second_losses[:, early.start : early.stop]  # (N, k): the same tokens
    return float((late_loss - early_loss).mean())


def score_table(scores: dict[str, torch.Tensor]) -> list[dict[str, float | int]]:
    """One row per head: ``{"layer": i, "head": j, "entropy": ..., ...}``."""
    L, nh = next(iter(scores.values())).shape
    return [
        {"layer": i, "head": j, **{name: float(value[i, j]) for name, value in scores.items()}}
        for i in range(L)
        for j in range(nh)
    ]


def scalar_tags(scores: dict[str, torch.Tensor], prefix: str = "heads") -> dict[str, float]:
    """``{"heads/induction/layer_0/head_1": value, ...}``: the TensorBoard scalars of the scores."""
    return {
        f"{prefix}/{name}/layer_{i}/head_{j}": float(value[i, j])
        for name, value in scores.items()
        for i in range(value.size(0))
        for j in range(value.size(1))
    }


def summary_metrics(scores: dict[str, torch.Tensor], names: Sequence[str] = SCORES) -> dict[str, float]:
    """A sweep's per-job figures: the largest value of each score over all heads, and each layer's
    mean entropy: ``{"heads/max/induction": ..., "heads/mean_entropy/layer_0": ...}``."""
    found = {f"heads/max/{name}": float(scores[name].max()) for name in names if name in scores}
    if "entropy" in scores:
        found |= {f"heads/mean_entropy/layer_{i}": float(row.mean()) for i, row in enumerate(scores["entropy"])}
    return found
