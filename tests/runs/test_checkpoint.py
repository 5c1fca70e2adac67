"""Reading checkpoints outside training: resolution, safe loading, the rebuilt model."""

import numpy as np
import pytest
import torch

from attnlab.data.tokenizer import CorpusVocabTokenizer, TiktokenTokenizer
from attnlab.errors import CheckpointError
from attnlab.runs.checkpoint import load_model
from attnlab.runs.layout import find_checkpoint
from attnlab.training.lit_gpt import LitGPT
from tests.conftest import CodeRunningPickle


@pytest.fixture
def run_dir(tmp_path, seed_text):
    base = TiktokenTokenizer()
    tok = CorpusVocabTokenizer(base, np.unique(base.encode(seed_text)))
    torch.manual_seed(0)
    lit = LitGPT(
        model=dict(vocab_size=tok.vocab_size, context_length=16, d_model=16, num_heads=2, num_layers=1), tokenizer=tok
    )
    (tmp_path / "checkpoints").mkdir()
    checkpoint = {"state_dict": lit.state_dict(), "hyper_parameters": dict(lit.hparams)}
    lit.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, tmp_path / "checkpoints" / "last.ckpt")
    return tmp_path, lit, seed_text


def test_a_run_folder_loads_the_same_model_and_tokenizer(run_dir):
    folder, lit, text = run_dir
    model, tok = load_model(folder)
    ids = torch.from_numpy(tok.encode(text)[:16].astype(np.int64)).unsqueeze(0)
    torch.testing.assert_close(model(ids), lit.model.eval()(ids))
    assert tok.decode(tok.encode(text)) == text


def test_missing_and_damaged_checkpoints_are_one_line_errors(run_dir, tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        find_checkpoint(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="no checkpoints/best.ckpt"):
        find_checkpoint(tmp_path / "checkpoints")
    ckpt = tmp_path / "checkpoints" / "last.ckpt"
    ckpt.write_bytes(ckpt.read_bytes()[:1000])  # truncated
    with pytest.raises(CheckpointError, match="damaged or not an attnlab checkpoint"):
        load_model(ckpt)


def test_a_crafted_pickle_is_refused_and_never_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": CodeRunningPickle()}, bad)
    with pytest.raises(CheckpointError, match="damaged or not an attnlab checkpoint"):
        load_model(bad)
    assert not (tmp_path / "pwned.txt").exists()
