"""The models' hyperparameters: :class:`ModelConfig` (the GPT), :class:`TransformerConfig` (the
encoder–decoder), checked when they are built (pure Python, no torch).

Shapes elsewhere use B = batch, T = sequence length, C = d_model, nh = num_heads,
hs = C // nh (head size), V = vocab size.
"""

from __future__ import annotations

from dataclasses import dataclass

from attnlab.checks import from_dict, is_int, require_bool, require_choice, require_int
from attnlab.errors import ConfigError

ATTENTION_IMPLS = ("explicit", "sdpa")
POSITIONAL_ENCODINGS = ("sinusoidal", "learned", "rope")
NORMS = ("layernorm", "rmsnorm")
ACTIVATIONS = ("gelu", "relu2", "relu")  # relu: the 2017 Transformer's
ARCHITECTURES = ("gpt", "transformer")  # model.architecture: conf/model/gpt.yaml, conf/model/transformer.yaml


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
    activation: str = "gelu"  # feed-forward nonlinearity: "gelu" | "relu2" (relu(x)**2) | "relu"
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


@dataclass
class TransformerConfig:
    """The encoder–decoder's hyperparameters (attnlab.model.transformer); the options it shares
    with the GPT mean the same, and are checked by the same code (:meth:`stack`)."""

    src_vocab_size: int  # rows of the source embedding table
    tgt_vocab_size: int  # rows of the target embedding table and the output layer
    src_context_length: int = 64  # S: longest source sequence
    tgt_context_length: int = 64  # T: longest target sequence
    d_model: int = 128  # C: width of every token's vector
    num_heads: int = 4  # nh: C is split into nh heads of hs = C // nh
    num_encoder_layers: int = 3  # encoder blocks
    num_decoder_layers: int = 3  # decoder blocks
    dropout: float = 0.0  # attention-weight, residual and embedding dropout
    attention: str = "sdpa"  # "explicit" | "sdpa", as ModelConfig.attention
    positional: str = "sinusoidal"  # "sinusoidal" (the paper's) | "learned" | "rope" (self-attention only)
    ffn_mult: int = 4  # feed-forward hidden width = ffn_mult * C
    bias: bool = True  # biases in Linear layers and LayerNorms
    norm: str = "layernorm"  # "layernorm" | "rmsnorm"
    qk_norm: bool = False  # RMSNorm each head's queries and keys before the dot product
    activation: str = "gelu"  # feed-forward nonlinearity: "gelu" | "relu2" | "relu" (the paper's)
    norm_first: bool = True  # pre-norm x + f(norm(x)); false: the paper's post-norm norm(x + f(x))
    tie_embeddings: bool = True  # the output layer reuses the target embedding matrix
    share_embeddings: bool = False  # one embedding table for source and target (equal vocab sizes)
    architecture: str = "transformer"  # what model.* builds (architecture_of); always "transformer" here

    def __post_init__(self) -> None:
        for name in (
            "src_vocab_size",
            "tgt_vocab_size",
            "src_context_length",
            "tgt_context_length",
            "num_encoder_layers",
            "num_decoder_layers",
        ):
            require_int(getattr(self, name), f"model.{name}")
        if self.architecture != "transformer":
            raise ConfigError(
                f"model.architecture={self.architecture!r} is not the encoder–decoder; use model=transformer"
            )
        for name in ("norm_first", "share_embeddings"):
            require_bool(getattr(self, name), f"model.{name}")
        if self.share_embeddings and self.src_vocab_size != self.tgt_vocab_size:
            raise ConfigError(
                f"model.share_embeddings=true needs one vocabulary, but model.src_vocab_size={self.src_vocab_size} "
                f"and model.tgt_vocab_size={self.tgt_vocab_size}; set share_embeddings=false or one tokenizer for both"
            )
        self.stack("decoder")  # the shared options: ModelConfig's checks, its one-line errors

    @property
    def head_size(self) -> int:
        return self.d_model // self.num_heads

    def stack(self, which: str) -> ModelConfig:
        """The options of the ``"encoder"``'s or the ``"decoder"``'s layers, as the ModelConfig that
        attention, norms, feed-forward and KV cache are built from (vocab_size: the target's)."""
        encoder = which == "encoder"
        return ModelConfig(
            vocab_size=self.tgt_vocab_size,
            context_length=self.src_context_length if encoder else self.tgt_context_length,
            d_model=self.d_model,
            num_heads=self.num_heads,
            num_layers=self.num_encoder_layers if encoder else self.num_decoder_layers,
            dropout=self.dropout,
            attention=self.attention,
            positional=self.positional,
            ffn_mult=self.ffn_mult,
            bias=self.bias,
            norm=self.norm,
            qk_norm=self.qk_norm,
            activation=self.activation,
            tie_embeddings=self.tie_embeddings,
        )

    @classmethod
    def from_dict(cls, values: dict) -> TransformerConfig:
        return from_dict(cls, values, "model")


def architecture_of(model: dict) -> str:
    """Which model a ``model.*`` config (or a checkpoint's saved hyperparameters) builds: ``"gpt"``
    (:class:`ModelConfig`; its configs name no architecture) or ``"transformer"`` (the encoder–decoder,
    :class:`TransformerConfig`)."""
    architecture = model.get("architecture", "gpt")
    require_choice(architecture, "model.architecture", ARCHITECTURES)
    return architecture
