"""``attnlab generate`` for an encoder–decoder checkpoint: source sentences in, their outputs out.

``attnlab generate ckpt_path=<run> source="3rd of March 2021"`` prints one output per source (a
``source_file`` gives one source per line, translated in batches), found by greedy search or, with
``beam_size`` > 1, beam search (:func:`attnlab.model.search.beam_search`, KV-cached). Sources are
encoded with the run's vocabulary; a character it never saw is one line naming it.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO

import torch

from attnlab.data.pair_vocab import Seq2SeqVocab
from attnlab.errors import ConfigError
from attnlab.model.search import beam_search
from attnlab.runs.checkpoint import seq2seq_from_checkpoint

BATCH = 64  # sources decoded together


def encoded_sources(sources: list[str], vocab: Seq2SeqVocab, limit: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sources as a padded batch: ids (B, S) and mask (B, S), True at real tokens."""
    encoded = []
    for n, text in enumerate(sources, 1):
        ids = vocab.encode(text, respell=True)  # (len,)
        if len(ids) == 0:
            raise ConfigError(f'source {n} is empty; give some text, e.g. source="3rd of March 2021"')
        if len(ids) > limit:
            raise ConfigError(
                f"source {n} has {len(ids)} tokens, more than the model's src_context_length={limit}; shorten it"
            )
        encoded.append(torch.as_tensor(ids, dtype=torch.long))
    S = max(len(ids) for ids in encoded)
    src = torch.full((len(encoded), S), vocab.pad_id, dtype=torch.long)  # (B, S)
    for i, ids in enumerate(encoded):
        src[i, : len(ids)] = ids
    mask = torch.arange(S)[None, :] < torch.tensor([len(ids) for ids in encoded])[:, None]  # (B, S)
    return src, mask


def translate_text(
    checkpoint: dict[str, Any],
    sources: list[str],
    beam_size: int,
    device: torch.device,
    out: TextIO = sys.stdout,
    err: TextIO = sys.stderr,
) -> dict[str, Any]:
    """Print the output of each source (one line each) on ``out``; the speed on ``err``."""
    model, vocab = seq2seq_from_checkpoint(checkpoint)
    model.to(device)
    started, outputs = time.perf_counter(), []
    for first in range(0, len(sources), BATCH):
        src, mask = encoded_sources(sources[first : first + BATCH], vocab, model.cfg.src_context_length)
        found = beam_search(model, src.to(device), mask.to(device), vocab.bos_id, vocab.eos_id, beam_size=beam_size)
        for ids in found.ids:
            outputs.append(vocab.decode(ids))
            out.write(outputs[-1] + "\n")
            out.flush()
    seconds = time.perf_counter() - started
    how = "greedy" if beam_size == 1 else f"beam search, {beam_size} beams"
    print(f"{len(sources)} source(s) in {seconds:.2f} s ({how}, {device.type})", file=err, flush=True)
    return {"outputs": outputs, "seconds": seconds}
