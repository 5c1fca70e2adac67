"""The parts of a block that are not attention: positions, norms and the feed-forward.

Shapes: B = batch, T = sequence length, C = d_model, nh = num_heads, hs = head size.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.model.config import ModelConfig

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


def make_norm(cfg: ModelConfig, size: int) -> nn.Module:
    """LayerNorm (the seed's; bias as ``cfg.bias``) or RMSNorm (scale only), over the last dim."""
    if cfg.norm == "rmsnorm":
        return nn.RMSNorm(size, eps=1e-5)
    return nn.LayerNorm(size, bias=cfg.bias)


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
        self.act = {"relu2": ReLUSquared, "relu": nn.ReLU}.get(cfg.activation, nn.GELU)()  # gelu by default
        self.down = nn.Linear(hidden, cfg.d_model, bias=cfg.bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.down(self.act(self.up(x))))  # (B, T, C) -> (B, T, 4C) -> (B, T, C)
