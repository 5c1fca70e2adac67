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

In Jupyter, every head's attention on a text (``attnlab.show_attention``)::

    attnlab.show_attention("outputs/2026-11-22/04-10-14", text="To be, or not to be")
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["load", "load_tokenizer", "show_attention"]


def load(path, device="cpu"):
    """``(model, tokenizer)`` from a folder written by ``attnlab export``; see :func:`attnlab.tools.export.load`."""
    from attnlab.tools.export import load as load_export

    return load_export(path, device)


def load_tokenizer(path):
    """The tokenizer of a folder written by ``attnlab export`` (either format); see
    :func:`attnlab.tools.export.load_tokenizer`."""
    from attnlab.tools.export import load_tokenizer as load_export_tokenizer

    return load_export_tokenizer(path)


def show_attention(run_or_checkpoint, text=None, height=900):
    """A trained model's attention explorer inline in Jupyter (a run folder or a ``.ckpt`` file; the
    probe training logged without ``text``); see :func:`attnlab.tools.attend.show_attention`."""
    from attnlab.tools.attend import show_attention as show

    return show(run_or_checkpoint, text, height)
