"""Beam and greedy search over the encoder–decoder (attnlab.model.search)."""

from __future__ import annotations

import itertools

import pytest
import torch

from attnlab.model import EncoderDecoder, TransformerConfig
from attnlab.model.search import beam_search

V, BOS, EOS = 6, 4, 5  # a tiny target vocabulary: 0..3 ordinary tokens, then BOS and EOS


def tiny_model(seed: int = 0, tgt_context_length: int = 5) -> EncoderDecoder:
    torch.manual_seed(seed)
    cfg = TransformerConfig(
        src_vocab_size=V,
        tgt_vocab_size=V,
        src_context_length=8,
        tgt_context_length=tgt_context_length,
        d_model=16,
        num_heads=2,
        num_encoder_layers=1,
        num_decoder_layers=2,
    )
    model = EncoderDecoder(cfg).eval()
    with torch.no_grad():  # sharper distributions than the 0.02 init, so hypotheses differ
        for p in model.parameters():
            p.mul_(20.0 if p.dim() > 1 else 1.0)
    return model


def sources(batch: int = 3, S: int = 6, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    src = torch.randint(0, 4, (batch, S), generator=g)  # (B, S)
    mask = torch.ones(batch, S, dtype=torch.bool)
    mask[0, 4:] = False  # the first source is padded
    return src, mask


def log_prob(model: EncoderDecoder, src: torch.Tensor, mask: torch.Tensor, target: list[int]) -> float:
    """log p(target + EOS | src) of one source (1, S), by one teacher-forced pass."""
    tgt_in = torch.tensor([[BOS] + target])  # (1, L+1)
    out = torch.tensor(target + [EOS])  # (L+1,)
    logits = model(src, tgt_in, mask)  # (1, L+1, V)
    return torch.log_softmax(logits[0].float(), dim=-1).gather(1, out[:, None]).sum().item()


def test_one_beam_is_greedy_search_token_by_token_without_a_cache():
    model = tiny_model()
    src, mask = sources()
    found = beam_search(model, src, mask, BOS, EOS, beam_size=1)
    for b in range(src.size(0)):
        tokens = [BOS]
        with torch.no_grad():
            while len(tokens) < model.cfg.tgt_context_length:
                logits = model(src[b : b + 1], torch.tensor([tokens]), mask[b : b + 1])  # (1, L, V)
                nxt = logits[0, -1].argmax().item()
                if nxt == EOS:
                    break
                tokens.append(nxt)
        assert found.ids[b] == tokens[1:]


def test_a_wide_beam_finds_the_most_likely_output_of_all():
    """With a beam as wide as every possible prefix, beam search is exhaustive: its answer is the
    most likely of all outputs that end in EOS (length_penalty=0 ranks by log p alone)."""
    model = tiny_model(tgt_context_length=4)  # BOS + 3 steps: finished outputs of at most 2 tokens + EOS
    src, mask = sources()
    found = beam_search(model, src, mask, BOS, EOS, beam_size=V**3, length_penalty=0.0)
    emitted = [t for t in range(V) if t != EOS]  # the model may emit any token, BOS included
    every = [list(t) for n in range(3) for t in itertools.product(emitted, repeat=n)]
    with torch.no_grad():
        for b in range(src.size(0)):
            scores = {tuple(t): log_prob(model, src[b : b + 1], mask[b : b + 1], t) for t in every}
            best = max(scores, key=scores.get)
            assert tuple(found.ids[b]) == best
            assert found.log_prob[b].item() == pytest.approx(scores[best], abs=1e-4)


def test_an_answer_that_ends_in_eos_wins_over_one_cut_at_max_length():
    model = tiny_model(seed=3)
    src, mask = sources(batch=4, seed=2)
    found = beam_search(model, src, mask, BOS, EOS, beam_size=8)
    cut = beam_search(model, src, mask, BOS, EOS, beam_size=8, max_length=1)  # no room for EOS after a token
    for ids in found.ids:
        assert len(ids) < model.cfg.tgt_context_length - 1  # finished: room was left for its EOS
    assert all(len(ids) <= 1 for ids in cut.ids)


def test_the_search_leaves_the_model_in_training_mode_and_refuses_a_zero_beam():
    model = tiny_model().train()
    src, mask = sources()
    beam_search(model, src, mask, BOS, EOS, beam_size=2)
    assert model.training
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, mask, BOS, EOS, beam_size=0)


def test_a_source_is_answered_the_same_alone_and_in_a_padded_batch():
    model = tiny_model(seed=5)
    src, mask = sources(batch=3, seed=4)
    together = beam_search(model, src, mask, BOS, EOS, beam_size=3)
    alone = beam_search(model, src[:1, :4], mask[:1, :4], BOS, EOS, beam_size=3)  # the padded one, unpadded
    assert together.ids[0] == alone.ids[0]
