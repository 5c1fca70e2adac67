"""The encoder–decoder and the one attention module under it: the blocks equal torch's reference
layers, padding and future targets never reach a real token, the KV-cached decoder equals the
uncached one, the GPT's attention computes what it did before, and bad configs are one line."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.errors import ConfigError
from attnlab.model import (
    CausalSelfAttention,
    DecoderBlock,
    EncoderBlock,
    EncoderDecoder,
    KVCache,
    ModelConfig,
    MultiHeadAttention,
    TransformerConfig,
)

C, NH = 32, 4


def layer_cfg(**kw) -> ModelConfig:
    values = dict(vocab_size=1, context_length=16, d_model=C, num_heads=NH, dropout=0.0)
    values.update(kw)
    return ModelConfig(**values)


def seq2seq(**kw) -> EncoderDecoder:
    values = dict(
        src_vocab_size=23,
        tgt_vocab_size=29,
        src_context_length=12,
        tgt_context_length=10,
        d_model=C,
        num_heads=NH,
        num_encoder_layers=2,
        num_decoder_layers=2,
    )
    values.update(kw)
    torch.manual_seed(0)
    return EncoderDecoder(TransformerConfig(**values)).eval()


def lengths_mask(lengths: list[int], size: int) -> torch.Tensor:
    return torch.arange(size)[None, :] < torch.tensor(lengths)[:, None]  # (B, size) True at real tokens


def randomise_norms(block: nn.Module) -> None:
    """LayerNorms start at weight 1, bias 0: random values make copying them into torch's layer count."""
    with torch.no_grad():
        for m in block.modules():
            if isinstance(m, nn.LayerNorm):
                m.weight.normal_(1.0, 0.2)
                m.bias.normal_(0.0, 0.2)


def copy_attention(ours: MultiHeadAttention, theirs: nn.MultiheadAttention) -> None:
    with torch.no_grad():
        theirs.in_proj_weight.copy_(torch.cat([ours.query.weight, ours.key.weight, ours.value.weight]))
        theirs.in_proj_bias.copy_(torch.cat([ours.query.bias, ours.key.bias, ours.value.bias]))
        theirs.out_proj.weight.copy_(ours.out_proj.weight)
        theirs.out_proj.bias.copy_(ours.out_proj.bias)


def copy_feed_forward_and_norms(ours: nn.Module, theirs: nn.Module, norms: int) -> None:
    theirs.linear1.load_state_dict(ours.ffn.up.state_dict())
    theirs.linear2.load_state_dict(ours.ffn.down.state_dict())
    for i in range(1, norms + 1):
        getattr(theirs, f"norm{i}").load_state_dict(getattr(ours, f"ln{i}").state_dict())


# --------------------------------------------------------------------------------------------
# The blocks against torch.nn.TransformerEncoderLayer / TransformerDecoderLayer
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_encoder_block_matches_torch_encoder_layer(norm_first, impl):
    torch.manual_seed(0)
    ours = EncoderBlock(layer_cfg(attention=impl), norm_first=norm_first).eval()
    randomise_norms(ours)
    theirs = nn.TransformerEncoderLayer(
        C, NH, dim_feedforward=4 * C, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_feed_forward_and_norms(ours, theirs, norms=2)
    x = torch.randn(3, 9, C)
    mask = lengths_mask([9, 5, 7], 9)  # (B, S)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), theirs(x), atol=1e-5, rtol=1e-5)
        padded_ours, padded_theirs = ours(x, mask=mask), theirs(x, src_key_padding_mask=~mask)
    torch.testing.assert_close(padded_ours[mask], padded_theirs[mask], atol=1e-5, rtol=1e-5)  # the real tokens


@pytest.mark.parametrize("impl", ["explicit", "sdpa"])
@pytest.mark.parametrize("norm_first", [False, True], ids=["post-norm", "pre-norm"])
def test_decoder_block_matches_torch_decoder_layer(norm_first, impl):
    torch.manual_seed(0)
    ours = DecoderBlock(layer_cfg(attention=impl), norm_first=norm_first).eval()
    randomise_norms(ours)
    theirs = nn.TransformerDecoderLayer(
        C, NH, dim_feedforward=4 * C, dropout=0.0, activation="gelu", batch_first=True, norm_first=norm_first
    ).eval()
    copy_attention(ours.self_attn, theirs.self_attn)
    copy_attention(ours.cross_attn, theirs.multihead_attn)
    copy_feed_forward_and_norms(ours, theirs, norms=3)
    T, S = 7, 9
    x, memory = torch.randn(3, T, C), torch.randn(3, S, C)
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)  # torch's: True = may not attend
    src_mask, tgt_mask = lengths_mask([9, 4, 6], S), lengths_mask([7, 7, 3], T)
    with torch.no_grad():
        ref = theirs(x, memory, tgt_mask=future, tgt_is_causal=True)
        torch.testing.assert_close(ours(x, memory), ref, atol=1e-5, rtol=1e-5)
        ref = theirs(
            x,
            memory,
            tgt_mask=future,
            tgt_is_causal=True,
            memory_key_padding_mask=~src_mask,
            tgt_key_padding_mask=~tgt_mask,
        )
        got = ours(x, memory, src_mask=src_mask, tgt_mask=tgt_mask)
    torch.testing.assert_close(got[tgt_mask], ref[tgt_mask], atol=1e-5, rtol=1e-5)


# --------------------------------------------------------------------------------------------
# Masks: padding and the future
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("positional", ["sinusoidal", "rope"])
@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_padding_never_changes_the_outputs_of_real_tokens(attention, positional):
    m = seq2seq(attention=attention, positional=positional)
    g = torch.Generator().manual_seed(1)
    src_lengths, tgt_lengths = [5, 3, 8], [4, 6, 2]
    sources = [torch.randint(0, 23, (n,), generator=g) for n in src_lengths]
    targets = [torch.randint(0, 29, (n,), generator=g) for n in tgt_lengths]

    def batch(S: int, T: int, pad: int) -> tuple[torch.Tensor, ...]:
        """Right-padded to (B, S) and (B, T) with token ``pad`` (or random ids, pad=-1)."""
        src = torch.randint(0, 23, (3, S), generator=g) if pad < 0 else torch.full((3, S), pad)
        tgt = torch.randint(0, 29, (3, T), generator=g) if pad < 0 else torch.full((3, T), pad)
        for i, (s, t) in enumerate(zip(sources, targets)):
            src[i, : len(s)], tgt[i, : len(t)] = s, t
        return src, tgt, lengths_mask(src_lengths, S), lengths_mask(tgt_lengths, T)

    with torch.no_grad():
        alone = [m(s[None], t[None])[0] for s, t in zip(sources, targets)]  # (T_i, V) each, no padding at all
        for S, T, pad in [(8, 6, 0), (12, 10, -1)]:  # two paddings: to the longest with 0s, longer with noise
            src, tgt, src_mask, tgt_mask = batch(S, T, pad)
            logits = m(src, tgt, src_mask=src_mask, tgt_mask=tgt_mask)  # (B, T, V)
            assert torch.isfinite(logits).all()  # the padded rows too
            for i, n in enumerate(tgt_lengths):
                torch.testing.assert_close(logits[i, :n], alone[i], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_a_query_that_sees_no_key_gives_zero_heads_and_finite_gradients(attention):
    torch.manual_seed(0)
    attn = MultiHeadAttention(layer_cfg(attention=attention), is_causal=True)
    x = torch.randn(2, 6, C, requires_grad=True)
    mask = torch.tensor([[False, False, True, True, True, True], [True] * 6])  # row 0: two left pads
    out = attn(x, key_padding_mask=mask)  # queries 0 and 1 of row 0 see only padded keys
    torch.testing.assert_close(out[0, :2], attn.out_proj.bias.expand(2, C).detach())  # zero heads -> Wo's bias
    out.sum().backward()
    assert torch.isfinite(x.grad).all() and torch.isfinite(attn.query.weight.grad).all()
    _, weights = attn(x, key_padding_mask=mask, return_weights=True)  # (B, nh, T, S)
    assert torch.all(weights[0, :, :2] == 0) and torch.all(weights[..., :2][0] == 0)  # nobody sees the pads
    torch.testing.assert_close(weights[0, :, 2:].sum(-1), torch.ones(NH, 4))
    m = seq2seq(attention=attention)
    logits = m(torch.randint(0, 23, (2, 5)), torch.randint(0, 29, (2, 4)), src_mask=torch.zeros(2, 5, dtype=torch.bool))
    assert torch.isfinite(logits).all()  # a source of padding only: the cross-attention reads nothing


@pytest.mark.parametrize("attention", ["explicit", "sdpa"])
def test_the_decoder_at_position_t_never_sees_later_targets(attention):
    m = seq2seq(attention=attention)
    src, tgt = torch.randint(0, 23, (2, 9)), torch.randint(0, 29, (2, 10))
    with torch.no_grad():
        logits = m(src, tgt)
        for t in (0, 4, 8):
            changed = tgt.clone()
            changed[:, t + 1 :] = (changed[:, t + 1 :] + 1) % 29
            other = m(src, changed)
            torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1], atol=1e-6, rtol=0)
            assert not torch.allclose(other[:, t + 1 :], logits[:, t + 1 :])
        changed_src = src.clone()
        changed_src[:, -1] = (changed_src[:, -1] + 1) % 23
        assert not torch.allclose(m(changed_src, tgt)[:, 0], logits[:, 0])  # the source reaches every position


def test_cross_attention_puts_no_weight_on_padded_source_tokens():
    m = seq2seq()
    src_mask = lengths_mask([4, 7], 7)
    _, cache = m.run_with_cache(
        torch.randint(0, 23, (2, 7)),
        names=["decoder.1.cross_attn.pattern"],
        tgt_ids=torch.randint(0, 29, (2, 5)),
        src_mask=src_mask,
    )
    pattern = cache["decoder.1.cross_attn.pattern"]  # (B, nh, T, S)
    assert pattern.shape == (2, NH, 5, 7)
    assert torch.all(pattern[0, ..., 4:] == 0)
    torch.testing.assert_close(pattern.sum(-1), torch.ones(2, NH, 5))


# --------------------------------------------------------------------------------------------
# The KV-cached decoder
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "switches",
    [
        {},
        {"attention": "explicit"},
        {"positional": "rope"},
        {"positional": "learned", "norm_first": False},
        {"qk_norm": True},
    ],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default",
)
def test_the_kv_cached_decoder_token_by_token_equals_the_uncached_one(switches):
    m = seq2seq(**switches)
    src, tgt = torch.randint(0, 23, (3, 11)), torch.randint(0, 29, (3, 10))
    src_mask = lengths_mask([11, 6, 9], 11)
    calls = []
    for block in m.decoder:  # count the cross-attention projections of the source
        project = block.cross_attn.project_memory
        block.cross_attn.project_memory = lambda mem, project=project: calls.append(1) or project(mem)
    with torch.no_grad():
        memory = m.encode(src, src_mask)  # (B, S, C)
        full = m.decode(tgt, memory, src_mask=src_mask)  # (B, T, V)
        calls.clear()
        cache = m.new_cache(3)
        steps = [m.decode(tgt[:, :3], memory, src_mask=src_mask, cache=cache)]  # a prompt of 3, then one by one
        steps += [m.decode(tgt[:, t : t + 1], memory, src_mask=src_mask, cache=cache) for t in range(3, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)
    assert cache.length == 10 and len(calls) == len(m.decoder)  # the source's keys and values: once per layer
    with pytest.raises(ValueError, match="10 cached \\+ 1 new tokens is longer than tgt_context_length=10"):
        m.decode(tgt[:, :1], memory, cache=cache)
    cache.reset()
    assert cache.length == 0 and cache.memory_kv is None


# --------------------------------------------------------------------------------------------
# Embeddings
# --------------------------------------------------------------------------------------------


def test_shared_and_tied_embeddings_are_one_matrix():
    shared = seq2seq(src_vocab_size=29, share_embeddings=True)
    assert shared.src_embedding is shared.tgt_embedding and shared.lm_head.weight is shared.tgt_embedding.weight
    separate = seq2seq(tie_embeddings=False)
    assert separate.src_embedding is not separate.tgt_embedding
    assert separate.lm_head.weight is not separate.tgt_embedding.weight
    assert separate.num_parameters() - shared.num_parameters() == (23 + 29) * C  # one table each, one more
    assert separate.src_positional is not None and seq2seq(positional="rope").src_positional is None


# --------------------------------------------------------------------------------------------
# The GPT's attention is the one it was
# --------------------------------------------------------------------------------------------


def attention_before(attn: CausalSelfAttention, x, impl=None, return_weights=False, cache=None, layer=0):
    """CausalSelfAttention.forward as it was before MultiHeadAttention (commit b73b909), verbatim."""
    B, T, C = x.shape  # (B, T, C)
    impl = impl or attn.impl
    q = attn.split_heads(attn.query(x))  # (B, nh, T, hs)
    k = attn.split_heads(attn.key(x))  # (B, nh, T, hs)
    v = attn.split_heads(attn.value(x))  # (B, nh, T, hs)
    start = cache.length if cache is not None else 0
    if attn.q_norm is not None:
        q, k = (attn.q_norm(q.float()).to(v.dtype), attn.k_norm(k.float()).to(v.dtype))
    if attn.rotary is not None:
        q, k = attn.rotary(q, start), attn.rotary(k, start)
    if cache is not None:
        k, v = cache.store(layer, k, v)
    S = k.size(2)
    visible = attn.causal[start : start + T, :S]
    weights = None
    if impl == "explicit" or return_weights:
        scores = q @ k.transpose(-2, -1) / math.sqrt(attn.head_size)
        scores = scores.masked_fill(~visible, float("-inf"))
        weights = F.softmax(scores.float(), dim=-1).to(q.dtype)
        out = attn.attn_dropout(weights) @ v
    else:
        mask = None if start == 0 or T == 1 else visible
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=start == 0, dropout_p=0.0)
    out = out.transpose(1, 2).contiguous().view(B, T, C)
    out = attn.resid_dropout(attn.out_proj(out))
    return (out, weights) if return_weights else out


@pytest.mark.parametrize(
    "switches",
    [{}, {"attention": "explicit"}, {"positional": "rope"}, {"qk_norm": True, "norm": "rmsnorm", "bias": False}],
    ids=lambda s: ",".join(f"{k}={v}" for k, v in s.items()) or "default",
)
def test_the_gpt_attention_computes_exactly_what_it_did_before(switches):
    cfg = layer_cfg(**switches)
    torch.manual_seed(0)
    attn = CausalSelfAttention(cfg).eval()
    assert not attn.cross and attn.is_causal and isinstance(attn, MultiHeadAttention)
    x = torch.randn(2, 12, C)
    with torch.no_grad():
        assert torch.equal(attn(x), attention_before(attn, x))
        new, new_w = attn(x, return_weights=True)
        old, old_w = attention_before(attn, x, return_weights=True)
        assert torch.equal(new, old) and torch.equal(new_w, old_w)
        new_cache, old_cache = KVCache(cfg, 2), KVCache(cfg, 2)
        for lo, hi in [(0, 5), (5, 6), (6, 9), (9, 10)]:  # a prompt, one token, three, one
            new, old = attn(x[:, lo:hi], cache=new_cache), attention_before(attn, x[:, lo:hi], cache=old_cache)
            new_cache.advance(hi - lo)
            old_cache.advance(hi - lo)
            assert torch.equal(new, old)
    names = {
        f"{p}.{w}"
        for p in ("query", "key", "value", "out_proj")
        for w in ("weight", "bias")
        if cfg.bias or w == "weight"
    }
    names |= {"q_norm.weight", "k_norm.weight"} if cfg.qk_norm else set()
    assert set(attn.state_dict()) == names  # the names every saved checkpoint holds


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad, message",
    [
        (dict(num_encoder_layers=0), "model.num_encoder_layers must be a positive integer, got 0"),
        (dict(tgt_vocab_size=2.5), "model.tgt_vocab_size must be a positive integer, got 2.5"),
        (dict(src_context_length=True), "model.src_context_length must be a positive integer, got True"),
        (dict(d_model=30), "model.d_model=30 is not divisible by model.num_heads=4"),
        (dict(dropout=1.0), r"model.dropout must be in \[0, 1\)"),
        (dict(positional="alibi"), "unknown model.positional='alibi'"),
        (dict(activation="swish"), "unknown model.activation='swish'"),
        (dict(norm_first="yes"), "model.norm_first must be true or false, got 'yes'"),
        (dict(tie_embeddings=1), "model.tie_embeddings must be true or false, got 1"),
        (dict(share_embeddings=True), "model.share_embeddings=true needs one vocabulary"),
        (dict(d_model=36, num_heads=4, positional="rope"), "head size d_model/num_heads = 9 is odd"),
    ],
)
def test_bad_config_values_are_one_line_errors(bad, message):
    values = dict(src_vocab_size=23, tgt_vocab_size=29, d_model=32, num_heads=4)
    values.update(bad)
    with pytest.raises(ConfigError, match=message) as error:
        TransformerConfig(**values)
    assert "\n" not in str(error.value)
    with pytest.raises(ConfigError, match=r"unknown model option\(s\) \['num_layers'\]"):
        TransformerConfig.from_dict({"src_vocab_size": 5, "tgt_vocab_size": 5, "num_layers": 2})


def test_attention_refuses_a_wrong_mask_and_a_missing_memory():
    attn = MultiHeadAttention(layer_cfg(), cross=True)
    x = torch.randn(2, 3, C)
    with pytest.raises(ValueError, match="cross-attention needs memory="):
        attn(x)
    with pytest.raises(ValueError, match=r"key_padding_mask must be bool \(B, S\) = \(2, 5\)"):
        attn(x, memory=torch.randn(2, 5, C), key_padding_mask=torch.ones(2, 5, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot be causal"):
        MultiHeadAttention(layer_cfg(), is_causal=True, cross=True)
