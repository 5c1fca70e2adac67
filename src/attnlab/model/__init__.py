"""The transformers in pure torch (no Lightning, no Hydra): config, layers, attention, the GPT,
sampling, and the encoder–decoder.

>>> from attnlab.model import GPT, ModelConfig, generate
>>> model = GPT(ModelConfig(vocab_size=100, d_model=64, num_heads=4, num_layers=2)).eval()
>>> from attnlab.model import EncoderDecoder, TransformerConfig
>>> seq2seq = EncoderDecoder(TransformerConfig(src_vocab_size=100, tgt_vocab_size=80)).eval()
"""

from attnlab.model.attention import CausalSelfAttention, KVCache, MultiHeadAttention
from attnlab.model.config import ModelConfig, TransformerConfig
from attnlab.model.gpt import GPT, Block
from attnlab.model.sampling import generate, sample_next
from attnlab.model.transformer import DecoderBlock, DecoderCache, EncoderBlock, EncoderDecoder

__all__ = [
    "GPT",
    "Block",
    "CausalSelfAttention",
    "DecoderBlock",
    "DecoderCache",
    "EncoderBlock",
    "EncoderDecoder",
    "KVCache",
    "ModelConfig",
    "MultiHeadAttention",
    "TransformerConfig",
    "generate",
    "sample_next",
]
