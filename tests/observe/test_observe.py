"""Attention maps, token labels, the probe, the model summary and the hparams record."""

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from attnlab.data.tokenizer import CorpusVocabTokenizer, TiktokenTokenizer
from attnlab.model import GPT, ModelConfig
from attnlab.observe import attention_maps
from attnlab.observe.attention_maps import attention_images, token_labels
from attnlab.observe.hparams import flat_hparams
from attnlab.observe.probe import default_probe, probe_attention
from attnlab.observe.summary import model_summary


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    cfg = ModelConfig(
        vocab_size=TiktokenTokenizer().vocab_size, context_length=48, d_model=16, num_heads=4, num_layers=2
    )
    return GPT(cfg).eval(), TiktokenTokenizer()


def test_probe_weights_are_causal_rows_that_sum_to_one(tiny):
    model, tok = tiny
    model.train()  # the probe must switch dropout off and restore the mode
    ids = torch.from_numpy(tok.encode("To be, or not to be").astype(np.int64))  # (7,)
    weights = probe_attention(model, ids)
    assert model.training
    assert len(weights) == 2 and weights[0].shape == (4, 7, 7)
    for w in weights:
        torch.testing.assert_close(w.sum(-1), torch.ones(4, 7))
        assert torch.all(torch.triu(w, diagonal=1) == 0)  # nothing attends to the future


def test_one_grid_and_one_mean_image_per_layer(tiny):
    model, tok = tiny
    images = attention_images(model, tok, torch.from_numpy(tok.encode("To be, or not to be").astype(np.int64)))
    assert list(images) == [
        "attention/layer_0",
        "attention/layer_0_mean",
        "attention/layer_1",
        "attention/layer_1_mean",
    ]
    grid, mean = images["attention/layer_0"], images["attention/layer_0_mean"]
    assert grid.dtype == np.uint8 and grid.ndim == 3 and grid.shape[2] == 3
    assert grid.shape[0] > mean.shape[0] and grid.shape[1] > mean.shape[1]  # 2 x 2 heads vs one panel
    assert (mean == 255).all(axis=2).mean() > 0.2  # white: background and the masked future cells
    assert len(np.unique(mean.reshape(-1, 3), axis=0)) > 50  # and a coloured heatmap with a colour bar


def test_labels_show_whitespace_and_fall_back_to_ids_without_a_font(monkeypatch, tiny):
    _, tok = tiny
    ids = tok.encode(" the\n中").tolist()  # ' the', '\n', '中' (a single cl100k token)
    latin = frozenset(range(0x250))
    monkeypatch.setattr(attention_maps, "_fonts", lambda: (("DejaVu Sans",), latin))
    labels, note = token_labels(tok, ids)
    assert labels[:2] == ["·the", "↵"] and labels[2] == f"#{ids[2]}"
    assert "install a CJK font" in note
    monkeypatch.setattr(attention_maps, "_fonts", lambda: (("DejaVu Sans", "Noto Sans CJK"), latin | {ord("中")}))
    labels, note = token_labels(tok, ids)
    assert labels[2] == "中" and note is None
    labels, note = token_labels(tok, tok.encode("王")[:1].tolist())  # half of a 3-byte character
    assert labels[0].startswith("#") and "partial UTF-8" in note


def test_default_probe_is_a_short_line_of_the_val_text():
    base = TiktokenTokenizer()
    text = "Hi.\nTo be, or not to be, that is the question:\n" + "word " * 100
    tok = CorpusVocabTokenizer(base, np.unique(base.encode(text)))
    ids = tok.encode(text)
    assert tok.decode(default_probe(tok, ids, 64)) == "To be, or not to be, that is the question"
    assert len(default_probe(tok, ids, 6)) == 6  # no line fits: the first context_length tokens


def test_model_summary_counts_every_parameter_once(tiny):
    model, _ = tiny
    text = model_summary(model)
    assert f"total {model.num_parameters():,} parameters" in text
    assert "blocks.1.attn" in text and "tied to token_embedding" in text
    attn = model.blocks[0].attn
    assert f"{sum(p.numel() for p in attn.parameters()):,}" in text


def test_model_summary_of_attention_only_blocks():
    model = GPT(ModelConfig(vocab_size=40, context_length=8, d_model=16, num_heads=2, num_layers=2, mlp=False))
    text = model_summary(model)
    assert f"total {model.num_parameters():,} parameters" in text and "mlp=False" in text
    rows = [line.split()[0] for line in text.splitlines() if line.startswith("blocks.")]
    assert rows == ["blocks.0.ln1", "blocks.0.attn", "blocks.1.ln1", "blocks.1.attn"]  # no ln2, no ffn


def test_flat_hparams_are_tensorboard_values():
    cfg = OmegaConf.create(
        {
            "model": {"d_model": 64, "bias": True},
            "optim": {"betas": [0.9, 0.95]},
            "data": {"path": None, "cache_dir": "x"},
            "seed": 3,
            "paths": {"root": "."},
        }
    )
    assert flat_hparams(cfg) == {
        "model.d_model": 64,
        "model.bias": "true",
        "optim.betas": "[0.9, 0.95]",
        "data.path": "None",
        "seed": 3,
    }
