"""``attnlab attend``: a trained model's attention maps for any text, as PNG files.

The same rendering as the TensorBoard IMAGES tab (:mod:`attnlab.observe.attention_maps`), outside
training. Config: conf/attend.yaml. Each call writes into a new folder of the run,
``<run>/attention/<date>_<time>/``, so earlier maps stay; ``out_dir=`` names another folder.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np
import torch
from omegaconf import DictConfig

from attnlab.data.datamodule import run_validation_ids
from attnlab.errors import ConfigError
from attnlab.observe.attention_maps import write_attention_pngs
from attnlab.observe.probe import default_probe
from attnlab.runs import layout
from attnlab.runs.checkpoint import model_from_checkpoint, read_checkpoint


def attend(cfg: DictConfig) -> list[Path]:
    ckpt = layout.find_checkpoint(cfg.get("ckpt_path"))
    run_dir = layout.run_of_checkpoint(ckpt)
    checkpoint = read_checkpoint(ckpt)
    model, tokenizer = model_from_checkpoint(checkpoint)
    Tmax = model.cfg.context_length
    if cfg.get("text"):
        ids = tokenizer.encode(cfg.text, respell=True)  # unseen tokens spelled with corpus ones, or one line
        if len(ids) == 0:
            raise ConfigError('text has no tokens; pass text="some words"')
        if len(ids) > Tmax:
            raise ConfigError(f"text has {len(ids)} tokens but the model's context_length is {Tmax}; shorten it")
    else:
        val_ids = run_validation_ids(run_dir, tokenizer, instead='pass text="..."')
        ids = default_probe(tokenizer, val_ids, Tmax)  # the probe training logged
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else new_attention_dir(run_dir)
    caption = f"{ckpt.name}, step {checkpoint.get('global_step', '?')}"
    ids = torch.from_numpy(np.asarray(ids, dtype=np.int64))  # (T,)
    paths = write_attention_pngs(model, tokenizer, ids, out_dir, caption)
    for path in paths:
        print(path, flush=True)
    return paths


def new_attention_dir(run_dir: Path) -> Path:
    """Create and return this call's :func:`attnlab.runs.layout.attention_dir`: a folder no other call has."""
    when, n = datetime.now(), 1
    while True:
        folder = layout.attention_dir(run_dir, when, n)
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:  # another call in the same second
            n += 1


main = attend  # attnlab attend
