"""attnlab: train multi-head causal transformers from scratch, and see inside them.

The package, by concept: model/ (pure torch), data/, training/ (Lightning), observe/, tools/
(``attnlab <tool>``), runs/ (run folders, checkpoints), sweeps/, system/ (devices, DDP,
resolvers); cli.py is the command line, errors.py and checks.py the one-line errors.

A trained model outside training, without Lightning or Hydra::

    import attnlab, torch
    from attnlab.model import generate

    model, tokenizer = attnlab.load("exports/shakespeare")      # written by `attnlab export`
    ids = torch.as_tensor(tokenizer.encode("ROMEO:", respell=True)).long()
    text = tokenizer.decode([int(t) for t in generate(model, ids, 50, temperature=0.8)])
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load", "load_tokenizer"]


def load(path, device="cpu"):
    """``(model, tokenizer)`` from a folder written by ``attnlab export``; see :func:`attnlab.tools.export.load`."""
    from attnlab.tools.export import load as load_export

    return load_export(path, device)


def load_tokenizer(path):
    """The tokenizer of a folder written by ``attnlab export`` (either format); see
    :func:`attnlab.tools.export.load_tokenizer`."""
    from attnlab.tools.export import load_tokenizer as load_export_tokenizer

    return load_export_tokenizer(path)
