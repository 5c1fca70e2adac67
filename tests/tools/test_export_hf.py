"""format=hf: random-weight attnlab GPTs, written as GPT-2 checkpoints, compute the same logits in
transformers' GPT2LMHeadModel; the configurations GPT-2 cannot express are refused in one line."""

import json

import pytest
import torch
from transformers import GPT2LMHeadModel

from attnlab.errors import ConfigError
from attnlab.model import GPT, ModelConfig, generate
from attnlab.tools.export_hf import write_gpt2

VOCAB, CONTEXT = 61, 16

# the settings GPT-2 can express, varied together so that each appears beside the others
EXPRESSIBLE = {
    "defaults": dict(),  # sinusoidal, tied, biases, ffn_mult 4
    "learned-untied-nobias": dict(positional="learned", tie_embeddings=False, bias=False, num_heads=4, num_layers=3),
    "sinusoidal-untied-ffn2": dict(tie_embeddings=False, ffn_mult=2, num_heads=1, num_layers=1),
    "learned-tied-nobias-ffn3": dict(positional="learned", bias=False, ffn_mult=3, num_heads=8, num_layers=2),
    "explicit-dropout": dict(attention="explicit", dropout=0.1, d_model=48, num_heads=3),
}


def random_gpt(**settings) -> GPT:
    """A GPT whose every parameter is random (biases and norms too, so that none maps by luck)."""
    cfg = {"vocab_size": VOCAB, "context_length": CONTEXT, "d_model": 32, "num_heads": 2, "num_layers": 2}
    model = GPT(ModelConfig(**{**cfg, **settings})).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.3)
    return model


def exported(model: GPT, folder) -> GPT2LMHeadModel:
    write_gpt2(model, folder, {"model": "random"})
    return GPT2LMHeadModel.from_pretrained(folder).eval()


@pytest.mark.parametrize("settings", EXPRESSIBLE.values(), ids=EXPRESSIBLE.keys())
def test_transformers_gpt2_computes_attnlabs_logits(settings, tmp_path):
    torch.manual_seed(0)
    model = random_gpt(**settings)
    hf = exported(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text())["attnlab"] == {"model": "random"}
    assert hf.dtype == torch.float32 and hf.config.tie_word_embeddings is False
    assert hf.config.attn_pdrop == hf.config.resid_pdrop == model.cfg.dropout  # for training on in transformers
    ids = torch.randint(0, VOCAB, (3, CONTEXT))  # (B, T): the whole context
    with torch.no_grad():
        expected = model(ids)  # (B, T, V)
        got = hf(ids).logits  # (B, T, V)
    assert expected.abs().max() > 1.0  # logits large enough that a wrong scale or a lost bias shows
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-4)


def test_transformers_greedy_generation_with_its_cache_continues_as_attnlabs(tmp_path):
    torch.manual_seed(1)
    model = random_gpt(positional="learned")
    hf = exported(model, tmp_path)
    prompt = torch.randint(0, VOCAB, (2, 4))  # (B, T0)
    ours = torch.stack(list(generate(model, prompt, CONTEXT - 4, temperature=0)), dim=1)  # (B, 12)
    theirs = hf.generate(prompt, max_new_tokens=CONTEXT - 4, do_sample=False, use_cache=True)[:, 4:]  # (B, 12)
    assert torch.equal(theirs, ours)


REFUSED = {  # the setting, and the reason the line gives
    "positional=rope": (
        dict(positional="rope"),
        "model.positional=rope (GPT-2 adds a position table to the embeddings and rotates no queries or keys)",
    ),
    "norm=rmsnorm": (
        dict(norm="rmsnorm"),
        "model.norm=rmsnorm (GPT-2's norms are LayerNorms, which subtract the mean)",
    ),
    "qk_norm=true": (dict(qk_norm=True), "model.qk_norm=true (GPT-2 has no norm on queries and keys)"),
    "activation=relu2": (
        dict(activation="relu2"),
        "model.activation=relu2 (GPT-2's MLP is GELU, and GPT-2 readers such as TransformerLens have no relu(x)**2)",
    ),
    "mlp=false": (dict(mlp=False), "model.mlp=false (every GPT-2 block has an MLP)"),
}


@pytest.mark.parametrize(("settings", "reason"), REFUSED.values(), ids=REFUSED.keys())
def test_what_gpt2_cannot_express_is_refused_in_one_line_before_anything_is_written(settings, reason, tmp_path):
    out = tmp_path / "export"
    with pytest.raises(ConfigError) as refused:
        write_gpt2(random_gpt(**settings), out, {})
    assert str(refused.value) == (
        f"format=hf writes a GPT-2 checkpoint, and GPT-2 cannot express {reason}; "
        "export this model with format=attnlab (the default) and read it with attnlab.load"
    )
    assert not out.exists()


def test_every_setting_gpt2_lacks_is_named_in_the_one_line(tmp_path):
    model = random_gpt(positional="rope", norm="rmsnorm")
    with pytest.raises(ConfigError, match=r"cannot express model\.positional=rope .*; nor model\.norm=rmsnorm "):
        write_gpt2(model, tmp_path, {})
