"""The transformer in pure torch (no Lightning, no Hydra): config, layers, attention, the GPT, sampling.

>>> from attnlab.model import GPT, ModelConfig, generate
>>> model = GPT(ModelConfig(vocab_size=100, d_model=64, num_heads=4, num_layers=2)).eval()
"""

from attnlab.model.attention import CausalSelfAttention, KVCache
from attnlab.model.config import ModelConfig
from attnlab.model.gpt import GPT, Block
from attnlab.model.sampling import generate, sample_next

__all__ = ["GPT", "Block", "CausalSelfAttention", "KVCache", "ModelConfig", "generate", "sample_next"]
