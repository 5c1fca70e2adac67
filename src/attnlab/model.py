"""The multi-head causal transformer (GPT-style decoder), from scratch, in one file.

Each step of the seed notebooks has one home here:

    token ids (B, T)
      -> token embedding                       TokenEmbedding          (B, T, C)
      -> + positional encoding                 SinusoidalPositions / LearnedPositions
                                               (or RotaryPositions: q and k rotated inside attention)
      -> N x Block:  x + attn(ln1(x))          CausalSelfAttention     (pre-norm: LayerNorm or RMSNorm)
                     x + ffn(ln2(x))           FeedForward             (4C, GELU or ReLU²)
      -> final norm
      -> output layer, tied to the token embedding (or its own)      (B, T, V) logits

The classic choices (the seed's) are the defaults; each modern one is a config switch, so a run
can ablate them one at a time: ``positional=rope``, ``norm=rmsnorm``, ``qk_norm=true``,
``activation=relu2``, ``tie_embeddings=false``.

Generation feeds one token at a time and keeps every layer's keys and values in a ``KVCache``,
so a new token attends to the cached ones instead of recomputing the whole window.

Shapes use B = batch, T = sequence length, C = d_model, nh = num_heads, hs = C // nh (head size),
V = vocab size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.config import from_dict
from attnlab.errors import ConfigError

ATTENTION_IMPLS = ("explicit", "sdpa")
POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "rope")
NORMS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("gelu", "relu2")


@dataclass
class ModelConfig:
    vocab_size: int  # rows of the embedding table and the output layer
    context_length: int = 64  # longest sequence; set by data.context_length
    d_model: int = 128  # C: width of every token's vector
    num_heads: int = 4  # nh: C is split into nh heads of hs = C // nh
    num_layers: int = 4  # N: stacked blocks
    dropout: float = 0.0  # attention-weight, residual and embedding dropout
    attention: str = "sdpa"  # "explicit" (the seed's math, can return weights) | "sdpa" (fused kernel)
    positional: str = "sinusoidal"  # "sinusoidal" (the seed's formula) | "learned" | "rope" (rotary q, k)
    ffn_mult: int = 4  # feed-forward hidden width = ffn_mult * C
    bias: bool = True  # biases in Linear layers and LayerNorms
    norm: str = "layernorm"  # "layernorm" | "rmsnorm" (no mean, no bias: cheaper)
    qk_norm: bool = False  # RMSNorm each head's queries and keys before the dot product
    activation: str = "gelu"  # feed-forward nonlinearity: "gelu" | "relu2" (relu(x)**2)
    tie_embeddings: bool = True  # the output layer reuses the token embedding matrix

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_heads", "num_layers", "ffn_mult"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                home = "data.context_length" if name == "context_length" else f"model.{name}"
                raise ConfigError(f"{home} must be a positive integer, got {value!r}")
        if self.d_model % self.num_heads:
            divisors = [h for h in range(1, self.d_model + 1) if self.d_model % h == 0 and h <= 64]
            raise ConfigError(
                f"model.d_model={self.d_model} is not divisible by model.num_heads={self.num_heads}; "
                f"pick num_heads from {divisors} or change d_model"
            )
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"model.dropout must be in [0, 1), got {self.dropout!r}")
        if self.attention not in ATTENTION_IMPLS:
            raise ConfigError(f"unknown model.attention={self.attention!r}; use one of {', '.join(ATTENTION_IMPLS)}")
        for name, allowed in (("positional", POSITIONAL_ENCODINGS), ("norm", NORMS), ("activation", ACTIVATIONS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"unknown model.{name}={getattr(self, name)!r}; use one of {', '.join(allowed)}")
        if self.positional == "rope" and self.head_size % 2:
            raise ConfigError(f"model.positional=rope rotates pairs of channels, but the head size "
                              f"d_model/num_heads = {self.head_size} is odd; pick num_heads so that it is even")
        for name in ("bias", "qk_norm", "tie_embeddings"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"model.{name} must be true or false, got {getattr(self, name)!r}")

    @property
    def head_size(self) -> int:
        return self.d_model // self.num_heads

    @classmethod
    def from_dict(cls, values: dict) -> "ModelConfig":
        return from_dict(cls, values, "model")


# --------------------------------------------------------------------------------------------
# Positions
# --------------------------------------------------------------------------------------------


def sinusoidal_table(context_length: int, d_model: int) -> torch.Tensor:
    """The seed's positional-encoding table (Vaswani et al.): (context_length, d_model).

    PE[pos, 2i] = sin(pos / 10000^(2i/C)),  PE[pos, 2i+1] = cos(pos / 10000^(2i/C)).
    """
    position = torch.arange(context_length, dtype=torch.float).unsqueeze(1)  # (T, 1)
    div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-math.log(10000.0) / d_model))  # (ceil(C/2),)
    table = torch.zeros(context_length, d_model)  # (T, C)
    table[:, 0::2] = torch.sin(position * div_term)  # even columns
    table[:, 1::2] = torch.cos(position * div_term[: d_model // 2])  # odd columns
    return table


class SinusoidalPositions(nn.Module):
    """Adds the fixed sinusoidal table; nothing to learn."""

    def __init__(self, context_length: int, d_model: int):
        super().__init__()
        self.register_buffer("table", sinusoidal_table(context_length, d_model), persistent=False)  # (Tmax, C)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        T = x.size(1)
        return x + self.table[start : start + T].to(x.dtype)  # (B, T, C) + (T, C)


class LearnedPositions(nn.Module):
    """Adds a trained vector per position (GPT-2 style)."""

    def __init__(self, context_length: int, d_model: int):
        super().__init__()
        self.embedding = nn.Embedding(context_length, d_model)  # (Tmax, C)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        T = x.size(1)
        positions = torch.arange(start, start + T, device=x.device)  # (T,)
        return x + self.embedding(positions)  # (B, T, C) + (T, C)


class RotaryPositions(nn.Module):
    """Rotary position embedding (RoPE, Su et al. 2021), applied to each head's queries and keys.

    Channel pair (i, i + hs/2) of a vector at position p is rotated by the angle p * theta_i,
    theta_i = 10000^(-2i/hs). A query at p and a key at p' then score q·k through their rotations'
    difference, p - p': attention sees relative positions, and nothing is added to the embeddings.
    """

    def __init__(self, context_length: int, head_size: int, base: float = 10000.0):
        super().__init__()
        inv_freq = base ** (-torch.arange(0, head_size, 2).float() / head_size)  # (hs/2,) theta_i
        angles = torch.outer(torch.arange(context_length).float(), inv_freq)  # (Tmax, hs/2): p * theta_i
        self.register_buffer("cos", angles.cos(), persistent=False)  # (Tmax, hs/2)
        self.register_buffer("sin", angles.sin(), persistent=False)  # (Tmax, hs/2)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """``x`` (B, nh, T, hs) at positions start..start+T-1, rotated."""
        T, half = x.size(2), x.size(3) // 2
        cos = self.cos[start : start + T].to(x.dtype)  # (T, hs/2), broadcast over (B, nh)
        sin = self.sin[start : start + T].to(x.dtype)  # (T, hs/2)
        x1, x2 = x[..., :half], x[..., half:]  # (B, nh, T, hs/2) each: the pairs (i, i + hs/2)
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs)


def make_norm(cfg: "ModelConfig", size: int) -> nn.Module:
    """LayerNorm (the seed's; bias as ``cfg.bias``) or RMSNorm (scale only), over the last dim."""
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(size, eps=1e-5)
    return nn.LayerNorm(size, bias=cfg.bias)


# --------------------------------------------------------------------------------------------
# Attention
# --------------------------------------------------------------------------------------------


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

    def split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, T, C = t.shape
        return t.view(B, T, self.num_heads, self.head_size).transpose(1, 2)  # (B, nh, T, hs)

    def forward(self, x: torch.Tensor, impl: str | None = None, return_weights: bool = False,
                cache: KVCache | None = None, layer: int = 0):
        """``x`` (B, T, C) holds positions start..start+T-1, where start is the number of tokens
        already in ``cache`` (0 without one); their queries also attend to the cached keys."""
        B, T, C = x.shape  # (B, T, C)
        impl = impl or self.impl
        q = self.split_heads(self.query(x))  # (B, nh, T, hs)
        k = self.split_heads(self.key(x))  # (B, nh, T, hs)
        v = self.split_heads(self.value(x))  # (B, nh, T, hs)
        start = cache.length if cache is not None else 0
        if self.q_norm is not None:  # QK-norm: unit-RMS queries and keys bound the logits' size
            q, k = self.q_norm(q.float()).to(v.dtype), self.k_norm(k.float()).to(v.dtype)  # (B, nh, T, hs), stats in fp32
        if self.rotary is not None:  # RoPE: rotate by absolute position, scores see relative ones
            q, k = self.rotary(q, start), self.rotary(k, start)  # (B, nh, T, hs)
        if cache is not None:
            k, v = cache.store(layer, k, v)  # (B, nh, S, hs), S = start + T: cached keys, then the new
        S = k.size(2)
        visible = self.causal[start : start + T, :S]  # (T, S): query start+i sees keys 0..start+i

        weights = None
        if impl == "explicit" or return_weights:
            scores = q @ k.transpose(-2, -1) / math.sqrt(self.head_size)  # (B, nh, T, S)
            scores = scores.masked_fill(~visible, float("-inf"))  # hide the future
            weights = F.softmax(scores.float(), dim=-1).to(q.dtype)  # (B, nh, T, S), rows sum to 1
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

        out = out.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads concatenated
        out = self.resid_dropout(self.out_proj(out))  # (B, T, C)
        return (out, weights) if return_weights else out


class ReLUSquared(nn.Module):
    """relu(x)**2 (So et al., Primer): as cheap as ReLU, smoother, sparse."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x).square()


class FeedForward(nn.Module):
    """Position-wise MLP: C -> ffn_mult*C -> GELU (or ReLU²) -> C."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        hidden = cfg.ffn_mult * cfg.d_model
        self.up = nn.Linear(cfg.d_model, hidden, bias=cfg.bias)
        self.act = ReLUSquared() if cfg.activation == "relu2" else nn.GELU()
        self.down = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.up(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(ln(x)), then x + ffn(ln(x))."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.ln1 = make_norm(cfg, cfg.d_model)
        self.attn = CausalSelfAttention(cfg)
        self.ln2 = make_norm(cfg, cfg.d_model)
        self.ffn = FeedForward(cfg)

    def forward(self, x: torch.Tensor, impl: str | None = None, return_weights: bool = False,
                cache: KVCache | None = None, layer: int = 0):
        weights = None
        if return_weights:
            a, weights = self.attn(self.ln1(x), impl=impl, return_weights=True, cache=cache, layer=layer)
        else:
            a = self.attn(self.ln1(x), impl=impl, cache=cache, layer=layer)
        x = x + a  # (B, T, C) residual
        x = x + self.ffn(self.ln2(x))  # (B, T, C) residual
        return (x, weights) if return_weights else x


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class GPT(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.token_embedding = nn.Embedding(cfg.vocab_size, cfg.d_model)  # (V, C)
        # added to the embeddings; with RoPE positions enter each attention layer instead
        added = {"sinusoidal": SinusoidalPositions, "learned": LearnedPositions}.get(cfg.positional)
        self.positional = added(cfg.context_length, cfg.d_model) if added else None
        self.dropout = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.num_layers))
        self.ln_f = make_norm(cfg, cfg.d_model)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)  # (C -> V)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.token_embedding.weight  # weight tying: one (V, C) matrix
        self.embed_scale = math.sqrt(cfg.d_model)  # Vaswani et al.: embeddings * sqrt(C) before + PE
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith(("out_proj.weight", "down.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.num_layers))

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

    def forward(self, idx: torch.Tensor, impl: str | None = None, return_attention: bool = False,
                cache: KVCache | None = None, last_only: bool = False):
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
        x = self.dropout(x)  # (B, T, C)
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
        logits = self.lm_head(self.ln_f(x))  # (B, T, V), or (B, 1, V) with last_only
        return (logits, attentions) if return_attention else logits
