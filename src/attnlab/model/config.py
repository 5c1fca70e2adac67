"""The model's hyperparameters: :class:`ModelConfig`, checked when it is built (pure Python, no torch).

Shapes elsewhere use B = batch, T = sequence length, C = d_model, nh = num_heads,
hs = C // nh (head size), V = vocab size.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.checks import from_dict, is_int, require_bool, require_choice
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
    mlp: bool = True  # the feed-forward sub-layer; false: attention-only blocks (as in Olsson et al. 2022)

    def __post_init__(self) -> None:
        for name in ("vocab_size", "context_length", "d_model", "num_heads", "num_layers", "ffn_mult"):
            value = getattr(self, name)
            if not is_int(value) or value < 1:
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
        require_choice(self.attention, "model.attention", ATTENTION_IMPLS)
        require_choice(self.positional, "model.positional", POSITIONAL_ENCODINGS)
        require_choice(self.norm, "model.norm", NORMS)
        require_choice(self.activation, "model.activation", ACTIVATIONS)
        if self.positional == "rope" and self.head_size % 2:
            raise ConfigError(
                f"model.positional=rope rotates pairs of channels, but the head size "
                f"d_model/num_heads = {self.head_size} is odd; pick num_heads so that it is even"
            )
        for name in ("bias", "qk_norm", "tie_embeddings", "mlp"):
            require_bool(getattr(self, name), f"model.{name}")

    @property
    def head_size(self) -> int:
        return self.d_model // self.num_heads

    @classmethod
    def from_dict(cls, values: dict) -> ModelConfig:
        return from_dict(cls, values, "model")
