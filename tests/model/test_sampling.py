"""Sampling rules and the generation loop."""

import pytest
import torch

from attnlab.errors import ConfigError
from attnlab.model import GPT, ModelConfig
from attnlab.model.sampling import Decoder, generate, sample_next


def test_greedy_takes_the_argmax():
    logits = torch.tensor([[0.1, 3.0, 0.2], [5.0, 0.0, 1.0]])
    assert sample_next(logits, temperature=0).tolist() == [1, 0]


def test_top_k_and_top_p_never_pick_excluded_tokens():
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    g = torch.Generator().manual_seed(0)
    picks_k = {sample_next(logits, 1.0, top_k=2, generator=g).item() for _ in range(200)}
    assert picks_k == {0, 1}
    picks_p = {sample_next(logits, 1.0, top_p=0.7, generator=g).item() for _ in range(200)}
    assert picks_p == {0, 1}  # 0.5 < 0.7, 0.5 + 0.3 >= 0.7: tokens 2 and 3 are dropped


def test_generate_is_seeded_and_slides_past_the_context():
    torch.manual_seed(0)
    model = GPT(ModelConfig(vocab_size=11, context_length=8, d_model=16, num_heads=2, num_layers=1)).eval()
    prompt = torch.tensor([1, 2, 3])

    def run(seed):
        g = torch.Generator().manual_seed(seed)
        return torch.stack(list(generate(model, prompt, 20, temperature=1.0, generator=g)), dim=1)

    a, b = run(5), run(5)
    assert a.shape == (1, 20) and torch.equal(a, b)


def tiny_model(**overrides) -> GPT:
    torch.manual_seed(0)
    cfg = dict(vocab_size=13, context_length=8, d_model=16, num_heads=2, num_layers=2)
    return GPT(ModelConfig(**{**cfg, **overrides})).eval()


@pytest.mark.parametrize("attention", ["sdpa", "explicit"])
@pytest.mark.parametrize("positional", ["sinusoidal", "learned", "modern"])
@pytest.mark.parametrize("slide", [1, 3])
def test_cached_logits_equal_the_full_window_at_every_step_and_after_slides(attention, positional, slide):
    modern = dict(positional="rope", norm="rmsnorm", qk_norm=True, activation="relu2", tie_embeddings=False)
    model = tiny_model(attention=attention, **(modern if positional == "modern" else dict(positional=positional)))
    Tmax = model.cfg.context_length
    prompt = torch.tensor([[1, 2, 3], [4, 5, 6]])  # (B=2, 3)
    cached = Decoder(model, prompt, use_cache=True, slide=slide)
    uncached = Decoder(model, prompt, use_cache=False, slide=slide)
    g = torch.Generator().manual_seed(0)
    starts = []
    for _ in range(20):  # 3 + 20 tokens through a window of 8: it slides many times
        window = cached.window  # (2, W)
        assert 1 <= window.size(1) <= Tmax and torch.equal(window[:, -1], cached.idx[:, -1])
        if slide == 1:  # the nanoGPT rule: always the latest context_length tokens
            assert torch.equal(window, cached.idx[:, -Tmax:])
        with torch.no_grad():
            reference = model(window)[:, -1, :]  # (2, V): the window from scratch, no cache
        logits = cached.next_logits()
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(uncached.next_logits(), reference, atol=1e-5, rtol=1e-5)
        nxt = torch.randint(0, 13, (2,), generator=g)
        cached.append(nxt)
        uncached.append(nxt)
        starts.append(cached.start)
    assert starts[-1] > 3 * slide  # slid at least 4 times
    assert cached.cache.length <= Tmax


def test_a_cached_chunk_after_a_prefix_equals_one_pass():
    model = tiny_model()
    idx = torch.randint(0, 13, (2, 8), generator=torch.Generator().manual_seed(1))  # (B, T)
    cache = model.new_cache(batch_size=2)
    with torch.no_grad():
        full, full_attn = model(idx, return_attention=True)  # (2, 8, V), [(2, nh, 8, 8)]
        head = model(idx[:, :5], cache=cache)  # (2, 5, V)
        tail, tail_attn = model(idx[:, 5:], cache=cache, return_attention=True)  # 3 queries over 8 keys
    torch.testing.assert_close(torch.cat([head, tail], dim=1), full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(tail_attn[0], full_attn[0][:, :, 5:, :], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="8 cached \\+ 1 new tokens is longer than context_length=8"):
        model(idx[:, :1], cache=cache)


def test_cached_and_uncached_generation_write_the_same_text():
    model = tiny_model()

    def run(use_cache):
        g = torch.Generator().manual_seed(3)
        steps = generate(model, torch.tensor([1, 2]), 25, temperature=1.0, top_k=8, generator=g, use_cache=use_cache)
        return torch.stack(list(steps), dim=1)  # (1, 25)

    assert torch.equal(run(True), run(False))


def test_bad_slide_and_empty_prompt_are_config_errors():
    model = tiny_model()
    with pytest.raises(ConfigError, match="slide must be an integer from 1 to context_length=8, got 9"):
        Decoder(model, torch.tensor([1]), slide=9)
    with pytest.raises(ConfigError, match="the prompt is empty"):
        Decoder(model, torch.tensor([], dtype=torch.long))
