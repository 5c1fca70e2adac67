import math

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import ConfigError
from attnlab.model import GPT, CausalSelfAttention, ModelConfig
from attnlab.model.layers import sinusoidal_table

torch.manual_seed(0)


def small_cfg(**kw) -> ModelConfig:
    values = dict(vocab_size=50, context_length=12, d_model=32, num_heads=4, num_layers=2, dropout=0.0)
    values.update(kw)
    return ModelConfig(**values)


def naive_attention(attn: CausalSelfAttention, x: torch.Tensor) -> torch.Tensor:
    """The seed's dot products, one query at a time, one head at a time."""
    B, T, C = x.shape
    nh, hs = attn.num_heads, attn.head_size
    q, k, v = attn.query(x), attn.key(x), attn.value(x)  # (B, T, C)
    out = torch.zeros(B, T, C)
    for b in range(B):
        for h in range(nh):
            cols = slice(h * hs, (h + 1) * hs)
            for i in range(T):
                scores = torch.stack([q[b, i, cols] @ k[b, j, cols] / math.sqrt(hs) for j in range(i + 1)])
                weights = torch.softmax(scores, dim=0)  # over the keys j <= i only
                out[b, i, cols] = sum(weights[j] * v[b, j, cols] for j in range(i + 1))
    return attn.out_proj(out)


def test_naive_loop_explicit_and_sdpa_agree():
    attn = CausalSelfAttention(small_cfg()).eval()
    x = torch.randn(2, 7, 32)
    with torch.no_grad():
        naive = naive_attention(attn, x)
        explicit = attn(x, impl="explicit")
        sdpa = attn(x, impl="sdpa")
    torch.testing.assert_close(explicit, naive, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(sdpa, naive, atol=1e-5, rtol=1e-5)


def test_matches_torch_multihead_attention():
    cfg = small_cfg()
    attn = CausalSelfAttention(cfg).eval()
    mha = torch.nn.MultiheadAttention(cfg.d_model, cfg.num_heads, bias=True, batch_first=True).eval()
    with torch.no_grad():
        mha.in_proj_weight.copy_(torch.cat([attn.query.weight, attn.key.weight, attn.value.weight]))
        mha.in_proj_bias.copy_(torch.cat([attn.query.bias, attn.key.bias, attn.value.bias]))
        mha.out_proj.weight.copy_(attn.out_proj.weight)
        mha.out_proj.bias.copy_(attn.out_proj.bias)
    T = 9
    x = torch.randn(3, T, cfg.d_model)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # True = may not attend
    with torch.no_grad():
        ref, ref_weights = mha(x, x, x, attn_mask=future, need_weights=True, average_attn_weights=False)
        ours, weights = attn(x, impl="explicit", return_weights=True)
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(weights, ref_weights, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
def test_future_tokens_never_change_the_past(impl):
    model = GPT(small_cfg(attention=impl)).eval()
    idx = torch.randint(0, 50, (2, 12))
    changed = idx.clone()
    changed[:, 6:] = torch.randint(0, 50, (2, 6))
    with torch.no_grad():
        a, b = model(idx), model(changed)
    torch.testing.assert_close(a[:, :6], b[:, :6], atol=1e-6, rtol=0)
    assert not torch.allclose(a[:, 6:], b[:, 6:])


def test_attention_weights_are_causal_distributions():
    model = GPT(small_cfg()).eval()
    with torch.no_grad():
        logits, attentions = model(torch.randint(0, 50, (2, 10)), return_attention=True)
    assert logits.shape == (2, 10, 50)
    assert len(attentions) == 2
    for w in attentions:
        assert w.shape == (2, 4, 10, 10)  # (B, nh, T, T)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 4, 10))
        assert torch.all(w.triu(diagonal=1) == 0)  # nothing from the future


def test_models_agree_across_implementations_with_same_parameters():
    explicit = GPT(small_cfg(attention="explicit")).eval()
    sdpa = GPT(small_cfg(attention="sdpa")).eval()
    sdpa.load_state_dict(explicit.state_dict())
    idx = torch.randint(0, 50, (2, 12))
    with torch.no_grad():
        torch.testing.assert_close(explicit(idx), sdpa(idx), atol=1e-5, rtol=1e-5)


def test_sinusoidal_table_is_the_seed_formula():
    context_length, d_model = 16, 64
    # seed 000, cells 48-50, verbatim in spirit
    table = torch.zeros(context_length, d_model)
    position = torch.arange(0, context_length, dtype=torch.float).unsqueeze(1)
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))
    table[:, 0::2] = torch.sin(position * div_term)
    table[:, 1::2] = torch.cos(position * div_term)
    torch.testing.assert_close(sinusoidal_table(context_length, d_model), table)
    # and the numbers the notebook printed
    assert sinusoidal_table(16, 64)[1, 0].item() == pytest.approx(0.84147, abs=1e-5)
    assert sinusoidal_table(16, 64)[1, 2].item() == pytest.approx(0.68156, abs=1e-5)


def test_learned_positions_and_weight_tying():
    model = GPT(small_cfg(positional="learned"))
    assert model.positional.embedding.weight.shape == (12, 32)
    assert model.lm_head.weight is model.token_embedding.weight
    assert model.num_parameters() == sum(p.numel() for p in set(model.parameters()))


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(d_model=30, num_heads=4), "not divisible by model.num_heads"),
        (dict(num_layers=0), "model.num_layers must be a positive integer"),
        (dict(dropout=1.0), r"model.dropout must be in \[0, 1\)"),
        (dict(attention="flash"), "unknown model.attention='flash'"),
        (dict(positional="alibi"), "unknown model.positional='alibi'"),
        (dict(activation="swish"), "unknown model.activation='swish'"),
        (dict(d_model=36, num_heads=4, positional="rope"), "head size d_model/num_heads = 9 is odd"),
        (dict(qk_norm="yes"), "model.qk_norm must be true or false"),
    ],
)
def test_config_is_validated(bad, message):
    with pytest.raises(ConfigError, match=message):
        small_cfg(**bad)


def test_tiny_model_memorises_tiny_text(seed_text):
    from attnlab.data.tokenizer import CorpusVocabTokenizer, TiktokenTokenizer

    base = TiktokenTokenizer("cl100k_base")
    ids = base.encode(seed_text).astype("int64")
    tok = CorpusVocabTokenizer(base, CorpusVocabTokenizer.vocab_of(ids, base.vocab_size))
    data = torch.from_numpy(tok.to_dense(ids))  # (70,)
    T = 16
    windows = data.unfold(0, T + 1, 1)  # (70-T, T+1): every window of the text
    x, y = windows[:, :-1], windows[:, 1:]
    torch.manual_seed(0)
    model = GPT(
        ModelConfig(vocab_size=tok.vocab_size, context_length=T, d_model=64, num_heads=4, num_layers=2, dropout=0.0)
    )
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = F.cross_entropy(model(x).view(-1, tok.vocab_size), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1


def test_unknown_model_option_is_named():
    with pytest.raises(ConfigError, match=r"unknown model option\(s\) \['num_head'\]"):
        ModelConfig.from_dict({"vocab_size": 10, "num_head": 4})


def test_rope_scores_depend_on_relative_position_only():
    from attnlab.model.layers import RotaryPositions

    rope = RotaryPositions(context_length=32, head_size=8)
    torch.manual_seed(0)
    q, k = torch.randn(1, 1, 1, 8), torch.randn(1, 1, 1, 8)  # (B, nh, T=1, hs)

    def score(pq: int, pk: int) -> torch.Tensor:
        return (rope(q, start=pq) * rope(k, start=pk)).sum()

    torch.testing.assert_close(score(5, 2), score(20, 17))  # same offset 3, other absolute positions
    assert not torch.allclose(score(5, 2), score(5, 4))  # another offset, another score
    torch.testing.assert_close(rope(q, start=0), q)  # position 0: no rotation
    torch.testing.assert_close(rope(q, start=9).norm(), q.norm())  # a rotation keeps lengths


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_modern_options_build_train_and_stay_causal(attention):
    cfg = small_cfg(
        positional="rope",
        norm="rmsnorm",
        qk_norm=True,
        activation="relu2",
        tie_embeddings=False,
        bias=False,
        attention=attention,
    )
    model = GPT(cfg)
    assert model.positional is None and isinstance(model.ln_f, torch.nn.RMSNorm)
    assert model.lm_head.weight is not model.token_embedding.weight
    assert model.blocks[0].attn.q_norm is not None and model.blocks[0].ffn.act(torch.tensor([-2.0, 3.0])).tolist() == [
        0.0,
        9.0,
    ]
    idx = torch.randint(0, cfg.vocab_size, (2, 12))
    logits = model(idx)  # (2, 12, V)
    changed = idx.clone()
    changed[:, 7:] = (changed[:, 7:] + 1) % cfg.vocab_size  # the future of position 6 changes
    torch.testing.assert_close(model(changed)[:, :7], logits[:, :7])  # its past does not see it
    F.cross_entropy(logits.view(-1, cfg.vocab_size), idx.view(-1)).backward()
    assert all(p.grad is not None for p in model.parameters())
