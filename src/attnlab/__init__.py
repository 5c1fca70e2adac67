"""attnlab: train multi-head causal transformers from scratch, and see inside them.

A trained model outside training, without Lightning or Hydra::

    import attnlab, torch
    from attnlab.generation import generate

    model, tokenizer = attnlab.load("exports/shakespeare")      # written by export.py
    ids = torch.as_tensor(tokenizer.encode("ROMEO:", respell=True)).long()
    text = tokenizer.decode([int(t) for t in generate(model, ids, 50, temperature=0.8)])
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load"]


def load(path, device="cpu"):
    """``(model, tokenizer)`` from a folder written by ``export.py``; see :func:`attnlab.export.load`."""
    from attnlab.export import load as load_export

    return load_export(path, device)
