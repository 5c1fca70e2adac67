"""The encoder–decoder Transformer of Vaswani et al. 2017 (the seed notes' "full Transformer"),
built from the GPT's parts:

    source ids (B, S)
      -> source embedding * sqrt(C) + positions                                       (B, S, C)
      -> N_enc x EncoderBlock:  self-attention over the whole source (padding hidden)
                                feed-forward                                          (B, S, C)
      -> final norm (pre-norm only)                                      memory       (B, S, C)
    target ids (B, T)
      -> target embedding * sqrt(C) + positions                                       (B, T, C)
      -> N_dec x DecoderBlock:  masked (causal) self-attention over the target
                                cross-attention: target queries, memory keys and values
                                feed-forward                                          (B, T, C)
      -> final norm (pre-norm only)
      -> output layer, tied to the target embedding (or its own)                      (B, T, V) logits

Every sub-layer is a residual: pre-norm ``x + f(norm(x))`` (``norm_first``, the default) or the
paper's post-norm ``norm(x + f(x))``. The attention is attention.py's ``MultiHeadAttention``,
the norms, feed-forward and positions are layers.py's, configured by ``TransformerConfig``.

Masks are bool, True at real tokens: ``src_mask`` (B, S), ``tgt_mask`` (B, T). Padded positions
are never seen by real ones; their own outputs are finite and mean nothing (the loss skips them).
``decode`` with a :class:`DecoderCache` runs only the new target tokens: their self-attention
reads the earlier tokens' cached keys and values, and each layer's cross-attention keys and
values of the source are computed once, at the first step.

Shapes use B = batch, S = source length, T = target length, C = d_model, nh = num_heads,
hs = C // nh, V = target vocab size.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn as nn

from attnlab.model.attention import KVCache, MultiHeadAttention
from attnlab.model.config import ModelConfig, TransformerConfig
from attnlab.model.gpt import GPT
from attnlab.model.hooks import HookedModel
from attnlab.model.layers import FeedForward, LearnedPositions, SinusoidalPositions, make_norm


def residual(x: torch.Tensor, norm: nn.Module, f: Callable[[torch.Tensor], torch.Tensor], norm_first: bool):
    """One sub-layer with its residual: ``x + f(norm(x))`` (pre-norm) or ``norm(x + f(x))`` (post-norm)."""
    return x + f(norm(x)) if norm_first else norm(x + f(x))  # (B, T, C)


class EncoderBlock(nn.Module):
    """Bidirectional self-attention, then feed-forward; each a residual sub-layer."""

    def __init__(self, cfg: ModelConfig, norm_first: bool = True):
        super().__init__()
        self.norm_first = norm_first
        self.ln1 = make_norm(cfg, cfg.d_model)
        self.self_attn = MultiHeadAttention(cfg)
        self.ln2 = make_norm(cfg, cfg.d_model)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """``x`` (B, S, C), ``mask`` (B, S) True at real tokens -> (B, S, C)."""
        x = residual(x, self.ln1, lambda h: self.self_attn(h, key_padding_mask=mask), self.norm_first)  # (B, S, C)
        return residual(x, self.ln2, self.ffn, self.norm_first)  # (B, S, C)


class DecoderBlock(nn.Module):
    """Causal self-attention, cross-attention over the encoder's output, then feed-forward."""

    def __init__(self, cfg: ModelConfig, norm_first: bool = True):
        super().__init__()
        self.norm_first = norm_first
        self.ln1 = make_norm(cfg, cfg.d_model)
        self.self_attn = MultiHeadAttention(cfg, is_causal=True)
        self.ln2 = make_norm(cfg, cfg.d_model)
        self.cross_attn = MultiHeadAttention(cfg, cross=True)
        self.ln3 = make_norm(cfg, cfg.d_model)
        self.ffn = FeedForward(cfg)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        cache: KVCache | None = None,
        layer: int = 0,
        memory_kv: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``x`` (B, T, C) the target, ``memory`` (B, S, C) the encoder's output (or ``memory_kv``,
        this block's cross-attention keys and values of it); ``src_mask`` (B, S), ``tgt_mask``
        (B, start+T) True at real tokens; ``cache`` holds the earlier target tokens' keys."""
        x = residual(
            x,
            self.ln1,
            lambda h: self.self_attn(h, cache=cache, layer=layer, key_padding_mask=tgt_mask),
            self.norm_first,
        )  # (B, T, C)
        x = residual(
            x,
            self.ln2,
            lambda h: self.cross_attn(h, memory=memory, memory_kv=memory_kv, key_padding_mask=src_mask),
            self.norm_first,
        )  # (B, T, C): each target position reads the source
        return residual(x, self.ln3, self.ffn, self.norm_first)  # (B, T, C)


class DecoderCache:
    """What :meth:`EncoderDecoder.decode` keeps between steps for one batch of sources: the
    decoder's self-attention :class:`KVCache`, and each layer's cross-attention keys and values of
    the source, computed at the first step. A new source needs :meth:`reset` (or a new cache)."""

    def __init__(self, cfg: ModelConfig, batch_size: int):
        self.self_attn = KVCache(cfg, batch_size)  # (N_dec, B, nh, T, hs) keys and values
        self.memory_kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per layer, (B, nh, S, hs) each

    @property
    def length(self) -> int:
        """Target tokens decoded so far."""
        return self.self_attn.length

    def reset(self) -> None:
        self.self_attn.reset()
        self.memory_kv = None

    def reorder(self, order: torch.Tensor) -> None:
        """Keep the batch rows ``order`` (B,), in that order (beam search's surviving hypotheses)."""
        self.self_attn.reorder(order)
        if self.memory_kv is not None:
            self.memory_kv = [(k[order], v[order]) for k, v in self.memory_kv]  # (B, nh, S, hs) each


class EncoderDecoder(HookedModel):
    """The encoder–decoder; its hook points are the attentions' (``decoder.{i}.cross_attn.pattern``, ...)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        enc, dec = cfg.stack("encoder"), cfg.stack("decoder")
        self.src_embedding = nn.Embedding(cfg.src_vocab_size, cfg.d_model)  # (V_src, C)
        self.tgt_embedding = (
            self.src_embedding if cfg.share_embeddings else nn.Embedding(cfg.tgt_vocab_size, cfg.d_model)
        )
        # added to the embeddings; with RoPE positions enter each self-attention instead
        added = {"sinusoidal": SinusoidalPositions, "learned": LearnedPositions}.get(cfg.positional)
        self.src_positional = added(cfg.src_context_length, cfg.d_model) if added else None
        self.tgt_positional = added(cfg.tgt_context_length, cfg.d_model) if added else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.encoder = nn.ModuleList(EncoderBlock(enc, cfg.norm_first) for _ in range(cfg.num_encoder_layers))
        self.decoder = nn.ModuleList(DecoderBlock(dec, cfg.norm_first) for _ in range(cfg.num_decoder_layers))
        # post-norm blocks end in a norm already; pre-norm stacks need one at the end
        self.ln_enc = make_norm(enc, cfg.d_model) if cfg.norm_first else nn.Identity()
        self.ln_dec = make_norm(dec, cfg.d_model) if cfg.norm_first else nn.Identity()
        self.lm_head = nn.Linear(cfg.d_model, cfg.tgt_vocab_size, bias=False)  # (C -> V)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.tgt_embedding.weight  # weight tying: one (V, C) matrix
        self.embed_scale = math.sqrt(cfg.d_model)  # Vaswani et al.: embeddings * sqrt(C) before + PE
        self.apply(GPT._init_weights)  # the GPT's: normal(0, 0.02), zero biases
        self.name_hook_points()

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())  # shared and tied weights count once

    def new_cache(self, batch_size: int) -> DecoderCache:
        """An empty :class:`DecoderCache` for ``batch_size`` sources."""
        return DecoderCache(self.cfg.stack("decoder"), batch_size)

    def embed_tokens(self, ids: torch.Tensor, table: nn.Embedding, positional: nn.Module | None, start: int = 0):
        x = table(ids) * self.embed_scale  # (B, T, C)
        if positional is not None:
            x = positional(x, start=start)  # (B, T, C): positions start..start+T-1 added
        return self.dropout(x)  # (B, T, C)

    def encode(self, src_ids: torch.Tensor, src_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The memory (B, S, C) of source ids ``src_ids`` (B, S); ``src_mask`` (B, S) True at real tokens."""
        S = src_ids.size(1)
        if self.cfg.src_context_length < S:
            raise ValueError(f"source of {S} tokens is longer than src_context_length={self.cfg.src_context_length}")
        x = self.embed_tokens(src_ids, self.src_embedding, self.src_positional)  # (B, S, C)
        for block in self.encoder:
            x = block(x, mask=src_mask)  # (B, S, C)
        return self.ln_enc(x)  # (B, S, C)

    def decode(
        self,
        tgt_ids: torch.Tensor,
        memory: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T, V) for target ids ``tgt_ids`` (B, T) given the encoder's ``memory`` (B, S, C).

        With ``cache``, ``tgt_ids`` continues the target tokens already in it (positions
        start..start+T-1, start = ``cache.length``) and is added to it; ``tgt_mask`` then covers
        all start+T target tokens. ``last_only``: the last position's logits only, (B, 1, V).
        """
        B, T = tgt_ids.shape
        start = cache.length if cache is not None else 0
        if start + T > self.cfg.tgt_context_length:
            where = f"{start} cached + {T} new tokens" if cache is not None else f"target of {T} tokens"
            raise ValueError(f"{where} is longer than tgt_context_length={self.cfg.tgt_context_length}")
        if cache is not None and cache.memory_kv is None:  # once per source: (B, nh, S, hs) each, per layer
            cache.memory_kv = [block.cross_attn.project_memory(memory) for block in self.decoder]
        x = self.embed_tokens(tgt_ids, self.tgt_embedding, self.tgt_positional, start=start)  # (B, T, C)
        for i, block in enumerate(self.decoder):
            kv = cache.memory_kv[i] if cache is not None else None
            x = block(
                x,
                memory if kv is None else None,
                src_mask=src_mask,
                tgt_mask=tgt_mask,
                cache=cache.self_attn if cache is not None else None,
                layer=i,
                memory_kv=kv,
            )  # (B, T, C)
        if cache is not None:
            cache.self_attn.advance(T)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C)
        return self.lm_head(self.ln_dec(x))  # (B, T, V), or (B, 1, V) with last_only

    def forward(
        self,
        src_ids: torch.Tensor,
        tgt_ids: torch.Tensor,
        src_mask: torch.Tensor | None = None,
        tgt_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, V): at target position t, the scores of the token after ``tgt_ids[:, :t+1]``
        given the whole source. Masks (B, S) and (B, T), True at real tokens."""
        memory = self.encode(src_ids, src_mask)  # (B, S, C)
        return self.decode(tgt_ids, memory, src_mask=src_mask, tgt_mask=tgt_mask)  # (B, T, V)
