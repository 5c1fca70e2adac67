"""The multi-head causal transformer (GPT-style decoder), from scratch.

Each step of the seed notebooks has one home in this package:

    token ids (B, T)
      -> token embedding                       nn.Embedding (gpt.py)               (B, T, C)
      -> + positional encoding                 SinusoidalPositions / LearnedPositions (layers.py)
                                               (or RotaryPositions: q and k rotated inside attention)
      -> N x Block:  x + attn(ln1(x))          CausalSelfAttention (attention.py)  (pre-norm: LayerNorm or RMSNorm)
                     x + ffn(ln2(x))           FeedForward (layers.py)             (4C, GELU or ReLU²; mlp=false: none)
      -> final norm
      -> output layer, tied to the token embedding (or its own)      (B, T, V) logits

The classic choices (the seed's) are the defaults; each modern one is a config switch, so a run
can ablate them one at a time: ``positional=rope``, ``norm=rmsnorm``, ``qk_norm=true``,
``activation=relu2``, ``tie_embeddings=false``.

Generation feeds one token at a time and keeps every layer's keys and values in a ``KVCache``,
so a new token attends to the cached ones instead of recomputing the whole window
(attention.py); sampling.py is the generation loop, config.py the hyperparameters.

Named hook points at each step (hooks.py) let a caller read or replace any activation:
``model.run_with_cache(ids)``, ``model.run_with_hooks(ids, hooks={name: fn})``.

Shapes use B = batch, T = sequence length, C = d_model, nh = num_heads, hs = C // nh (head size),
V = vocab size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from attnlab.model.attention import CausalSelfAttention, KVCache
from attnlab.model.config import ModelConfig
from attnlab.model.hooks import HookedModel, HookPoint
from attnlab.model.layers import FeedForward, LearnedPositions, SinusoidalPositions, make_norm


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + ffn(ln(x)) (``model.mlp=false``: no ffn)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.resid_pre = HookPoint()  # (B, T, C) the hook points of attnlab.model.hooks
        self.ln1 = make_norm(cfg, cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.attn_out = HookPoint()
        self.ln2 = make_norm(cfg, cfg.d_model) if cfg.mlp else None
        self.ffn = FeedForward(cfg) if cfg.mlp else None
        self.mlp_out = HookPoint() if cfg.mlp else None
        self.resid_post = HookPoint()

    def forward(
        self,
        x: torch.Tensor,
        impl: str | None = None,
        return_weights: bool = False,
        cache: KVCache | None = None,
        layer: int = 0,
    ):
        weights = None
        x = self.resid_pre(x)  # (B, T, C)
        if return_weights:
            a, weights = self.attn(self.ln1(x), impl=impl, return_weights=True, cache=cache, layer=layer)
        else:
            a = self.attn(self.ln1(x), impl=impl, cache=cache, layer=layer)
        x = x + self.attn_out(a)  # (B, T, C) residual
        if self.ffn is not None:
            x = x + self.mlp_out(self.ffn(self.ln2(x)))  # (B, T, C) residual
        x = self.resid_post(x)  # (B, T, C)
        return (x, weights) if return_weights else x


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class GPT(HookedModel):
    """The model; its hook points (``embed``, ``blocks.{i}.attn.pattern``, ...) and
    ``run_with_cache`` / ``run_with_hooks`` are those of :mod:`attnlab.model.hooks`."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)  # (V, C)
        # added to the embeddings; with RoPE positions enter each attention layer instead
        added = {"sinusoidal": SinusoidalPositions, "learned": LearnedPositions}.get(cfg.positional)
        self.positional = added(cfg.context_length, cfg.d_model) if added else None
        self.embed = HookPoint()  # (B, T, C)
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = make_norm(cfg, cfg.d_model)
        self.ln_final = HookPoint()  # (B, T, C)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # (C -> V)
        self.logits = HookPoint()  # (B, T, V)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.token_embedding.weight  # weight tying: one (V, C) matrix
        self.embed_scale = math.sqrt(cfg.d_model)  # Vaswani et al.: embeddings * sqrt(C) before + PE
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("out_proj.weight", "down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))
        self.name_hook_points()

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights count once

    def new_cache(self, batch_size: int) -> KVCache:
        """An empty :class:`KVCache` for ``batch_size`` sequences."""
        return KVCache(self.cfg, batch_size)

    def forward(
        self,
        idx: torch.Tensor,
        impl: str | None = None,
        return_attention: bool = False,
        cache: KVCache | None = None,
        last_only: bool = False,
    ):
        """Logits (B, T, V) for token ids ``idx`` (B, T); with ``return_attention`` also each
        layer's attention weights, a list of num_layers tensors (B, nh, T, S).

        With ``cache``, ``idx`` continues the tokens already in it (positions start..start+T-1,
        start = ``cache.length``; S = start + T keys) and is added to it. ``last_only`` computes
        the logits of the last position only, (B, 1, V): all that generation needs.
        """
        B, T = idx.shape
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.context_length:
            where = f"{start} cached + {T} new tokens" if cache is not None else f"sequence of {T} tokens"
            raise ValueError(f"{where} is longer than context_length={self.cfg.context_length}")
        x = self.token_embedding(idx) * self.embed_scale  # (B, T, C)
        if self.positional is not None:
            x = self.positional(x, start=start)  # (B, T, C): positions start..start+T-1 added
        x = self.dropout(self.embed(x))  # (B, T, C)
        attentions = []
        for i, block in enumerate(self.blocks):
            if return_attention:
                x, w = block(x, impl=impl, return_weights=True, cache=cache, layer=i)  # w: (B, nh, T, S)
                attentions.append(w)
            else:
                x = block(x, impl=impl, cache=cache, layer=i)  # (B, T, C)
        if cache is not None:
            cache.advance(T)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C)
        logits = self.logits(self.lm_head(self.ln_final(self.ln_f(x))))  # (B, T, V), or (B, 1, V) with last_only
        return (logits, attentions) if return_attention else logits
