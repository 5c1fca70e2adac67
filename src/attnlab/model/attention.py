"""Multi-head attention (causal or bidirectional, self or cross), and the KV cache that generation feeds it.

One module, the seed's ``MultiHeadAttention(args, is_causal=False)``, is every attention of both
models: the GPT's masked self-attention (:class:`CausalSelfAttention`), and the encoder's
bidirectional self-attention, the decoder's masked self-attention and its cross-attention over the
encoder output (attnlab.model.transformer). A key-padding mask (B, S), True at real tokens, hides
padded keys from every query.

Shapes: B = batch, T = new tokens (queries), S = keys (cached + new, or the memory's), C = d_model,
nh = num_heads, hs = head size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.errors import ConfigError
from attnlab.model.config import ATTENTION_IMPLS, ModelConfig
from attnlab.model.hooks import HookPoint
from attnlab.model.layers import RotaryPositions, make_norm


class KVCache:
    """The keys and values every layer computed for the tokens already processed.

    With the cache, the model's forward takes only the *new* tokens: their queries attend to the
    cached keys and values of the earlier positions, so each generated token costs O(T) attention
    and one token's projections instead of the whole (T, T) window. Positions are absolute
    (0..context_length-1), so the cache holds at most ``context_length`` tokens; when a caller
    slides its window, the positions of every kept token change, so it :meth:`reset` s the cache
    and feeds the cropped window again.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int):
        self.shape = (cfg.num_layers, batch_size, cfg.num_heads, cfg.context_length, cfg.head_size)
        self.keys: torch.Tensor | None = None  # (N, B, nh, Tmax, hs), made by the first store()
        self.values: torch.Tensor | None = None  # (N, B, nh, Tmax, hs)
        self.length = 0  # positions 0..length-1 are filled

    def store(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write ``layer``'s k, v (B, nh, T, hs) at positions length..length+T-1; return all its
        keys and values so far, (B, nh, length+T, hs) each."""
        if self.keys is None:  # on the keys' device, in their dtype (bf16 under autocast)
            self.keys, self.values = k.new_zeros(self.shape), v.new_zeros(self.shape)
        end = self.length + k.size(2)
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def advance(self, T: int) -> None:
        """Every layer has stored the T new positions."""
        self.length += T

    def reset(self) -> None:
        self.length = 0

    def reorder(self, order: torch.Tensor) -> None:
        """Keep the batch rows ``order`` (B,), in that order, in every layer."""
        if self.keys is not None:
            self.keys, self.values = self.keys[:, order], self.values[:, order]  # (N, B, nh, Tmax, hs)


class MultiHeadAttention(nn.Module):
    """Multi-head scaled dot-product attention: softmax(q k^T / sqrt(hs)) v in each head.

    ``is_causal``: query i sees keys j <= i only (masked self-attention). ``cross``: the keys and
    values come from ``memory`` (B, S, C), the encoder's output, instead of ``x``; cross-attention
    has no rotary positions and no cache (its keys and values are those of one source, which
    :meth:`project_memory` computes once). ``explicit`` writes the seed's steps out (and can return
    the attention weights); ``sdpa`` runs the same computation on the same parameters through
    PyTorch's fused kernel.

    ``key_padding_mask`` (B, S) bool, True at real tokens, hides the padded keys. A padded query
    attends like a real one (to the real keys it may see), and no real token ever sees a padded
    one; a query that may see no key at all (a causal row of left padding, a sequence of padding
    only) gets all-zero weights and a zero output from each head, never NaN.
    """

    def __init__(self, cfg: ModelConfig, is_causal: bool = False, cross: bool = False):
        super().__init__()
        if is_causal and cross:
            raise ValueError("cross-attention sees the whole memory: it cannot be causal")
        C = cfg.d_model
        self.num_heads, self.head_size = cfg.num_heads, cfg.head_size
        self.impl, self.dropout = cfg.attention, cfg.dropout
        self.is_causal, self.cross = is_causal, cross
        self.query = nn.Linear(C, C, bias=cfg.bias)  # Wq
        self.key = nn.Linear(C, C, bias=cfg.bias)  # Wk
        self.value = nn.Linear(C, C, bias=cfg.bias)  # Wv
        self.out_proj = nn.Linear(C, C, bias=cfg.bias)  # Wo: mixes the concatenated heads
        self.attn_dropout = nn.Dropout(cfg.dropout)  # on the attention weights (explicit path)
        self.resid_dropout = nn.Dropout(cfg.dropout)  # on the block's output
        rotary = cfg.positional == "rope" and not cross  # queries and keys of one sequence only
        self.rotary = RotaryPositions(cfg.context_length, cfg.head_size) if rotary else None
        self.q_norm = make_norm(cfg, cfg.head_size) if cfg.qk_norm else None  # per head, over hs
        self.k_norm = make_norm(cfg, cfg.head_size) if cfg.qk_norm else None
        if is_causal:
            Tmax = cfg.context_length
            # causal[i, j] is True where query i may look at key j (j <= i): lower triangle
            self.register_buffer("causal", torch.tril(torch.ones(Tmax, Tmax, dtype=torch.bool)), persistent=False)
        self.scores = HookPoint()  # (B, nh, T, S) before softmax (attnlab.model.hooks)
        self.pattern = HookPoint()  # (B, nh, T, S) the attention weights
        self.z = HookPoint()  # (B, nh, T, hs) each head's output

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def project_memory(self, memory: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Cross-attention's keys and values of ``memory`` (B, S, C): (B, nh, S, hs) each."""
        k = self.split_heads(self.key(memory))  # (B, nh, S, hs)
        v = self.split_heads(self.value(memory))  # (B, nh, S, hs)
        if self.k_norm is not None:
            k = self.k_norm(k.float()).to(v.dtype)  # (B, nh, S, hs), stats in fp32
        return k, v

    def forward(
        self,
        x: torch.Tensor,
        impl: str | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
        *,
        memory: torch.Tensor | None = None,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
        key_padding_mask: torch.Tensor | None = None,
    ):
        """``x`` (B, T, C) holds positions start..start+T-1, where start is the number of tokens
        already in ``cache`` (0 without one); their queries also attend to the cached keys.

        Cross-attention takes ``memory`` (B, S, C), or ``memory_kv``, its keys and values from
        :meth:`project_memory` (what a decoder's cache keeps). ``key_padding_mask`` (B, S) covers
        every key: the memory's, or the cached and new tokens'.
        """
        B, T, C = x.shape  # (B, T, C)
        impl = impl or self.impl
        if self.cross != (memory is not None or memory_kv is not None):
            raise ValueError("cross-attention needs memory= (B, S, C); self-attention takes none")
        q = self.split_heads(self.query(x))  # (B, nh, T, hs)
        start = cache.length if cache is not None else 0
        if self.cross:
            k, v = memory_kv if memory_kv is not None else self.project_memory(memory)  # (B, nh, S, hs)
            if self.q_norm is not None:
                q = self.q_norm(q.float()).to(v.dtype)  # (B, nh, T, hs)
        else:
            k = self.split_heads(self.key(x))  # (B, nh, T, hs)
            v = self.split_heads(self.value(x))  # (B, nh, T, hs)
            if self.q_norm is not None:  # QK-norm: unit-RMS queries and keys bound the logits' size
                q, k = (
                    self.q_norm(q.float()).to(v.dtype),
                    self.k_norm(k.float()).to(v.dtype),
                )  # (B, nh, T, hs), stats in fp32
            if self.rotary is not None:  # RoPE: rotate by absolute position, scores see relative ones
                q, k = self.rotary(q, start), self.rotary(k, start)  # (B, nh, T, hs)
            if cache is not None:
                k, v = cache.store(layer, k, v)  # (B, nh, S, hs), S = start + T: cached keys, then the new
        S = k.size(2)
        visible = None  # visible[..., i, j]: query i may look at key j; None: every key may be seen
        if self.is_causal:
            visible = self.causal[start : start + T, :S]  # (T, S): query start+i sees keys 0..start+i
        empty = None  # (B, 1, T or 1, 1): queries that may see no key at all
        if key_padding_mask is not None:
            if key_padding_mask.dtype != torch.bool or tuple(key_padding_mask.shape) != (B, S):
                raise ValueError(
                    f"key_padding_mask must be bool (B, S) = {(B, S)}, True at real tokens; "
                    f"got {key_padding_mask.dtype} {tuple(key_padding_mask.shape)}"
                )
            keys = key_padding_mask[:, None, None, :]  # (B, 1, 1, S)
            visible = keys if visible is None else visible & keys  # (B, 1, T or 1, S)
            empty = ~visible.any(dim=-1, keepdim=True)  # (B, 1, T or 1, 1)

        weights = None
        if impl == "explicit" or return_weights or self.scores.active or self.pattern.active:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, S)
            if visible is not None:
                scores = scores.masked_fill(~visible, float("-inf"))  # hide the future and the padding
            scores = self.scores(scores)  # (B, nh, T, S)
            if empty is None:
                weights = F.softmax(scores.float(), dim=-1).to(q.dtype)  # (B, nh, T, S), rows sum to 1
            else:  # a row without a visible key: softmax of zeros, then zero weights (no NaN, no gradient)
                weights = F.softmax(scores.masked_fill(empty, 0.0).float(), dim=-1).to(q.dtype).masked_fill(empty, 0.0)
            weights = self.pattern(weights)  # (B, nh, T, S)
            out = self.attn_dropout(weights) @ v  # (B, nh, T, hs)
        elif impl == "sdpa":
            if empty is not None:  # padding: the full mask; a row that sees nothing sees everything, then 0
                mask, causal = visible | empty, False  # (B, 1, T or 1, S)
            elif self.is_causal:
                # is_causal aligns the triangle top-left, right only when queries and keys both start
                # at 0; after cached keys pass the mask (one new query sees every key: no mask at all)
                mask, causal = (None if start == 0 or T == 1 else visible), start == 0
            else:
                mask, causal = None, False
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=causal, dropout_p=self.dropout if self.training else 0.0
            )  # (B, nh, T, hs)
            if empty is not None:
                out = out.masked_fill(empty, 0.0)  # (B, nh, T, hs)
        else:
            raise ConfigError(f"unknown attention implementation {impl!r}; use one of {', '.join(ATTENTION_IMPLS)}")

        out = self.z(out)  # (B, nh, T, hs)
        out = out.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads concatenated
        out = self.resid_dropout(self.out_proj(out))  # (B, T, C)
        return (out, weights) if return_weights else out


class CausalSelfAttention(MultiHeadAttention):
    """The GPT's multi-head masked self-attention: ``MultiHeadAttention(cfg, is_causal=True)``."""

    def __init__(self, cfg: ModelConfig):
        super().__init__(cfg, is_causal=True)
