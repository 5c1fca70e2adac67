"""attnlab: train multi-head causal transformers from scratch, and see inside them."""

__version__ = "0.1.0"
