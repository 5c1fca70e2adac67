"""Per-head scores: each is its formula on patterns whose answer is known."""

from __future__ import annotations

import math

import pytest
import torch

from attnlab.model import GPT, ModelConfig
from attnlab.observe.heads import (
    SCORES,
    head_scores,
    in_context_bands,
    in_context_pairs,
    in_context_score,
    in_context_shift,
    pattern_scores,
    position_losses,
    repeat_scores,
    repeated_random_tokens,
    scalar_tags,
    score_table,
    summary_metrics,
)

T = 8


def previous_token() -> torch.Tensor:
    p = torch.zeros(T, T)
    p[0, 0] = 1.0
    p[torch.arange(1, T), torch.arange(0, T - 1)] = 1.0
    return p  # (T, T)


def uniform() -> torch.Tensor:
    p = torch.ones(T, T).tril()
    return p / p.sum(-1, keepdim=True)


def stacked(*heads: torch.Tensor) -> torch.Tensor:
    return torch.stack(heads)[None, None].expand(1, 2, len(heads), T, T)  # (L=1, B=2, nh, T, T)


def test_pattern_scores_of_known_patterns():
    scores = pattern_scores(stacked(previous_token(), uniform(), torch.eye(T)))
    assert set(scores) == {"entropy", "distance", "prev_token", "first_token", "self"}
    assert scores["prev_token"][0].tolist() == pytest.approx(
        [1.0, sum(1 / (i + 1) for i in range(1, T)) / (T - 1), 0.0]
    )
    assert scores["distance"][0].tolist() == pytest.approx([1.0, sum(i / 2 for i in range(1, T)) / (T - 1), 0.0])
    assert scores["entropy"][0].tolist() == pytest.approx(
        [0.0, sum(math.log(i + 1) for i in range(1, T)) / (T - 1), 0.0]
    )
    assert scores["self"][0].tolist() == pytest.approx([0.0, scores["prev_token"][0, 1].item(), 1.0])
    assert scores["first_token"][0, 0].item() == pytest.approx(1 / (T - 1))  # query 1's previous token is token 0


def test_induction_and_duplicate_find_the_copy_and_the_token_after_it():
    R = T // 2
    induction, duplicate = torch.zeros(T, T), torch.zeros(T, T)
    for i in range(R, T):
        induction[i, i - R + 1] = 1.0
        duplicate[i, i - R] = 1.0
    scores = repeat_scores(stacked(induction, duplicate, uniform()))
    assert scores["induction"][0, :2].tolist() == [1.0, 0.0] and scores["duplicate"][0, :2].tolist() == [0.0, 1.0]
    tokens = repeated_random_tokens(50, T, batch=3, seed=1)
    assert tokens.shape == (3, T) and torch.equal(tokens[:, :R], tokens[:, R:])


def test_scores_of_a_model_read_its_patterns_and_leave_it_as_it_was():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=40, context_length=T, d_model=16, num_heads=2, num_layers=2)).train()
    forced = previous_token()[None, None].expand(3, 2, T, T)  # layer 1: both heads previous-token
    text = torch.randint(0, 40, (3, T))
    with model.hooks({"blocks.1.attn.pattern": lambda p, name: forced.to(p.dtype)}):
        scores = head_scores(model, text, repeated_random_tokens(40, T, batch=3))
    assert set(scores) == set(SCORES) and all(v.shape == (2, 2) for v in scores.values())
    assert scores["prev_token"][1].tolist() == [1.0, 1.0] and scores["prev_token"][0].max() < 1.0
    assert model.training  # restored
    table = score_table(scores)
    assert len(table) == 4 and table[2] == {"layer": 1, "head": 0, **{k: float(v[1, 0]) for k, v in scores.items()}}
    assert scalar_tags(scores)["heads/prev_token/layer_1/head_1"] == 1.0
    summary = summary_metrics(scores)
    assert summary["heads/max/prev_token"] == 1.0 and set(summary) >= {
        "heads/mean_entropy/layer_0",
        "heads/max/induction",
    }


def test_in_context_compares_the_same_tokens_from_a_late_and_an_early_position():
    early, late = in_context_bands(64)
    assert (list(early), list(late)) == ([3, 4, 5, 6, 7, 8], [58, 59, 60, 61, 62, 63])
    assert [list(b) for b in in_context_bands(8)] == [[1], [7]] and in_context_shift(64) == 55
    spans = torch.arange(2 * (65 + 55)).view(2, 120)  # (N, T+1+d)
    first, second = in_context_pairs(spans, 64)
    assert first.shape == second.shape == (2, 65)
    # the token first predicts at position p (target first[:, p+1]) second predicts at p - d
    assert torch.equal(first[:, 1:][:, 58:64], second[:, 1:][:, 3:9])
    late_better = torch.full((2, 64), 5.0)
    late_better[:, 58:] = 3.0
    assert in_context_score(late_better, torch.full((2, 64), 5.0)) == -2.0
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=40, context_length=T, d_model=16, num_heads=2, num_layers=1))
    losses = position_losses(model, torch.randint(0, 40, (4, T + 1)))
    assert losses.shape == (4, T) and torch.isfinite(losses).all()


def test_score_images_are_one_grid_per_score():
    from attnlab.observe.head_maps import score_images

    images = score_images({"induction": torch.rand(2, 4), "entropy": torch.rand(2, 4) * 2}, caption="step 9")
    assert set(images) == {"heads/induction", "heads/entropy"}
    for image in images.values():
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8" and image.std() > 10
