"""``attnlab attend``: a trained model's attention maps for any text, as PNG files and as the
interactive explorer in one self-contained ``attention.html``.

The same rendering as the TensorBoard IMAGES tab (:mod:`attnlab.observe.attention_maps`) and the
same page as its "attention" tab (:mod:`attnlab.observe.explorer`), outside training. Config:
conf/attend.yaml. Each call writes into a new folder of the run, ``<run>/attention/<date>_<time>/``,
so earlier maps stay; ``out_dir=`` names another folder. :func:`show_attention` shows the page in
Jupyter (``attnlab.show_attention``).
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
from attnlab.observe.explorer.page import explorer_html, iframe, model_step, write_explorer_html
from attnlab.observe.probe import default_probe
from attnlab.runs import layout
from attnlab.runs.checkpoint import model_from_checkpoint, read_checkpoint

HTML_FILE = "attention.html"  # beside the PNGs


def probe(ckpt_path, text: str | None):
    """``(checkpoint file, checkpoint, model, tokenizer, ids (T,))`` for ``text``, or the probe
    training logged when it is empty."""
    ckpt = layout.find_checkpoint(ckpt_path)
    checkpoint = read_checkpoint(ckpt)
    model, tokenizer = model_from_checkpoint(checkpoint)
    Tmax = model.cfg.context_length
    if text:
        ids = tokenizer.encode(text, respell=True)  # unseen tokens spelled with corpus ones, or one line
        if len(ids) == 0:
            raise ConfigError('text has no tokens; pass text="some words"')
        if len(ids) > Tmax:
            raise ConfigError(f"text has {len(ids)} tokens but the model's context_length is {Tmax}; shorten it")
    else:
        val_ids = run_validation_ids(layout.run_of_checkpoint(ckpt), tokenizer, instead='pass text="..."')
        ids = default_probe(tokenizer, val_ids, Tmax)  # the probe training logged
    return ckpt, checkpoint, model, tokenizer, torch.from_numpy(np.asarray(ids, dtype=np.int64))  # (T,)


def attend(cfg: DictConfig) -> list[Path]:
    ckpt, checkpoint, model, tokenizer, ids = probe(cfg.get("ckpt_path"), cfg.get("text"))
    out_dir = Path(cfg.out_dir) if cfg.get("out_dir") else new_attention_dir(layout.run_of_checkpoint(ckpt))
    step = int(checkpoint.get("global_step", 0))
    caption = f"{ckpt.name}, step {checkpoint.get('global_step', '?')}"
    paths = write_attention_pngs(model, tokenizer, ids, out_dir, caption)
    title = page_title(ckpt)
    paths.append(write_explorer_html([model_step(model, tokenizer, ids, step)], title, out_dir / HTML_FILE))
    for path in paths:
        print(path, flush=True)
    return paths


def show_attention(run_or_checkpoint, text: str | None = None, height: int = 900):
    """The explorer of ``attention.html`` inline in Jupyter: an ``IPython.display.HTML`` (an
    iframe whose ``srcdoc`` is the page) for ``text``, or the probe training logged."""
    try:
        from IPython.display import HTML
    except ImportError:
        raise ConfigError("show_attention displays in Jupyter and needs IPython; pip install ipython") from None
    ckpt, checkpoint, model, tokenizer, ids = probe(run_or_checkpoint, text)
    step = model_step(model, tokenizer, ids, int(checkpoint.get("global_step", 0)))
    return HTML(iframe(explorer_html([step], page_title(ckpt)), height))


def page_title(ckpt: Path) -> str:
    """``<run folder's name>/<checkpoint>``: what the page calls its one run."""
    return f"{layout.run_of_checkpoint(ckpt).name}/{ckpt.name}"


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
