"""Multi-head causal self-attention, and the KV cache that generation feeds it.

Shapes: B = batch, T = new tokens, S = keys (cached + new), C = d_model, nh = num_heads,
hs = head size.
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


class CausalSelfAttention(nn.Module):
    """Multi-head masked self-attention.

    ``explicit`` writes the seed's steps out (and can return the attention weights); ``sdpa`` runs
    the same computation on the same parameters through PyTorch's fused kernel.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        C = cfg.d_model
        self.num_heads, self.head_size = cfg.num_heads, cfg.head_size
        self.impl, self.dropout = cfg.attention, cfg.dropout
        self.query = nn.Linear(C, C, bias=cfg.bias)  # Wq
        self.key = nn.Linear(C, C, bias=cfg.bias)  # Wk
        self.value = nn.Linear(C, C, bias=cfg.bias)  # Wv
        self.out_proj = nn.Linear(C, C, bias=cfg.bias)  # Wo: mixes the concatenated heads
        self.attn_dropout = nn.Dropout(cfg.dropout)  # on the attention weights (explicit path)
        self.resid_dropout = nn.Dropout(cfg.dropout)  # on the block's output
        self.rotary = RotaryPositions(cfg.context_length, cfg.head_size) if cfg.positional == "rope" else None
        self.q_norm = make_norm(cfg, cfg.head_size) if cfg.qk_norm else None  # per head, over hs
        self.k_norm = make_norm(cfg, cfg.head_size) if cfg.qk_norm else None
        Tmax = cfg.context_length
        # causal[i, j] is True where query i may look at key j (j <= i): lower triangle
        self.register_buffer("causal", torch.tril(torch.ones(Tmax, Tmax, dtype=torch.bool)), persistent=False)
        self.scores = HookPoint()  # (B, nh, T, S) before softmax (attnlab.model.hooks)
        self.pattern = HookPoint()  # (B, nh, T, S) the attention weights
        self.z = HookPoint()  # (B, nh, T, hs) each head's output

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(
        self,
        x: torch.Tensor,
        impl: str | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ):
        """``x`` (B, T, C) holds positions start..start+T-1, where start is the number of tokens
        already in ``cache`` (0 without one); their queries also attend to the cached keys."""
        B, T, C = x.shape  # (B, T, C)
        impl = impl or self.impl
        q = self.split_heads(self.query(x))  # (B, nh, T, hs)
        k = self.split_heads(self.key(x))  # (B, nh, T, hs)
        v = self.split_heads(self.value(x))  # (B, nh, T, hs)
        start = cache.length if cache is not None else 0
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
        visible = self.causal[start : start + T, :S]  # (T, S): query start+i sees keys 0..start+i

        weights = None
        if impl == "explicit" or return_weights or self.scores.active or self.pattern.active:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, S)
            scores = self.scores(scores.masked_fill(~visible, float("-inf")))  # hide the future
            weights = self.pattern(F.softmax(scores.float(), dim=-1).to(q.dtype))  # (B, nh, T, S), rows sum to 1
            out = self.attn_dropout(weights) @ v  # (B, nh, T, hs)
        elif impl == "sdpa":
            # is_causal aligns the triangle top-left, right only when queries and keys both start
            # at 0; after cached keys pass the mask (one new query sees every key: no mask at all)
            mask = None if start == 0 or T == 1 else visible
            out = F.scaled_dot_product_attention(
                q, k, v, attn_mask=mask, is_causal=start == 0, dropout_p=self.dropout if self.training else 0.0
            )  # (B, nh, T, hs)
        else:
            raise ConfigError(f"unknown attention implementation {impl!r}; use one of {', '.join(ATTENTION_IMPLS)}")

        out = self.z(out)  # (B, nh, T, hs)
        out = out.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads concatenated
        out = self.resid_dropout(self.out_proj(out))  # (B, T, C)
        return (out, weights) if return_weights else out
