"""Bad input: one line naming the problem and the fix, before any training, nothing half-written."""

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from attnlab.data.tokenizer import CorpusVocabTokenizer, TiktokenTokenizer
from attnlab.errors import AttnlabError
from attnlab.training.lit_gpt import LitGPT
from attnlab.training.task import train
from tests.conftest import ROOT

FAST = ["debug=tiny", "trainer.max_steps=2", "trainer.val_check_interval=2", "~logger"]


@pytest.fixture
def inputs(tmp_path, seed_text):
    """Bad corpora and checkpoints under tmp_path/in (the run writes to tmp_path/run)."""
    d = tmp_path / "in"
    (d / "no_txt").mkdir(parents=True)
    (d / "no_txt" / "notes.csv").write_text("not a text format attnlab reads", encoding="utf-8")
    (d / "empty.txt").write_text("", encoding="utf-8")
    (d / "blank.txt").write_text(" \n\t\n", encoding="utf-8")
    (d / "latin1.txt").write_bytes("Ophélie, à Élseneur".encode("latin-1"))
    (d / "short.txt").write_text("To be, or not to be, that is the question.", encoding="utf-8")  # 13 tokens

    base = TiktokenTokenizer()
    tok = CorpusVocabTokenizer(base, np.unique(base.encode(seed_text)))
    lit = LitGPT(
        model=dict(vocab_size=tok.vocab_size, context_length=16, d_model=64, num_heads=4, num_layers=2), tokenizer=tok
    )
    checkpoint = {"state_dict": lit.state_dict(), "hyper_parameters": dict(lit.hparams)}
    lit.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, d / "other_shape.ckpt")
    whole = (d / "other_shape.ckpt").read_bytes()
    (d / "truncated.ckpt").write_bytes(whole[: len(whole) // 3])
    (d / "garbage.ckpt").write_bytes(os.urandom(4096))
    torch.save({"state_dict": {}, "hyper_parameters": _Payload()}, d / "crafted.ckpt")
    return d


class _Payload:
    def __reduce__(self):
        return (os.system, ("echo pwned > pwned.txt",))


IN = "{in}"  # replaced by the inputs folder

CASES = [
    # model
    (
        ["model.d_model=30", "model.num_heads=4"],
        "model.d_model=30 is not divisible by model.num_heads=4; pick num_heads from [1, 2, 3, 5, 6, 10, 15, 30] or change d_model",
    ),
    (["model.d_model=0"], "model.d_model must be a positive integer, got 0"),
    (["model.num_heads=-2"], "model.num_heads must be a positive integer, got -2"),
    (["model.num_layers=0"], "model.num_layers must be a positive integer, got 0"),
    (["data.context_length=0"], "data.context_length must be a positive integer, got 0"),
    (["model.dropout=1.0"], "model.dropout must be in [0, 1), got 1.0"),
    (["model.dropout=-0.1"], "model.dropout must be in [0, 1), got -0.1"),
    (["model.attention=flash"], "unknown model.attention='flash'; use one of explicit, sdpa"),
    (["model.positional=rotary"], "unknown model.positional='rotary'; use one of sinusoidal, learned, rope"),
    (["model.norm=batchnorm"], "unknown model.norm='batchnorm'; use one of layernorm, rmsnorm"),
    (["optim.name=sgd"], "unknown optim.name='sgd'; use one of adamw, muon"),
    (
        ["data/tokenizer=char", "+data.tokenizer.max_vocab=64"],
        "data.tokenizer.max_vocab caps the corpus vocabulary of a tiktoken tokenizer",
    ),
    (
        ["data.tokenizer.max_vocab=200"],
        "data.tokenizer.max_vocab=200 leaves no room beside the 256 single-byte fallback tokens",
    ),
    # data
    (
        [f"data.path={IN}/missing.txt"],
        f"data.path '{IN}/missing.txt' does not exist; point data.path at a text file or a folder of .txt files",
    ),
    (
        [f"data.path={IN}/no_txt"],
        f"folder '{IN}/no_txt' has no .txt, .md, .jsonl, .json or .parquet files (each also .gz); add some or point data.path at a text file",
    ),
    (
        [f"data.path={IN}/empty.txt"],
        f"'{IN}/empty.txt' holds no text (empty or whitespace only); point data.path at a non-empty text",
    ),
    (
        [f"data.path={IN}/blank.txt"],
        f"'{IN}/blank.txt' holds no text (empty or whitespace only); point data.path at a non-empty text",
    ),
    (
        [f"data.path={IN}/latin1.txt"],
        f"'{IN}/latin1.txt' is not UTF-8 (byte 0xe9 at offset 3); convert it, e.g. `iconv -f <its encoding> -t UTF-8`",
    ),
    (
        [f"data.path={IN}/short.txt"],
        "corpus too short: 13 tokens split into 9 train / 4 val, but each split needs at least data.context_length+1 = 17; "
        "use more text, a smaller data.context_length or another data.val_fraction",
    ),
    (
        ["data.val_fraction=0.1"],  # the seed sample's 70 tokens: the val split is too short
        "corpus too short: 70 tokens split into 63 train / 7 val, but each split needs at least data.context_length+1 = 17; "
        "use more text, a smaller data.context_length or another data.val_fraction",
    ),
    (
        ["data.val_fraction=0.9"],  # and now the train split
        "corpus too short: 70 tokens split into 7 train / 63 val, but each split needs at least data.context_length+1 = 17; "
        "use more text, a smaller data.context_length or another data.val_fraction",
    ),
    (["data.val_fraction=0"], "data.val_fraction must be in (0, 1), got 0"),
    (["data.val_fraction=1.5"], "data.val_fraction must be in (0, 1), got 1.5"),
    (["data.batch_size=0"], "data.batch_size must be a positive integer, got 0"),
    (
        ["data.tokenizer.kind=sentencepiece"],
        "unknown tokenizer kind 'sentencepiece'; set data.tokenizer.kind to 'tiktoken' or 'char'",
    ),
    (
        ["data/tokenizer=char", "data.tokenizer.corpus_vocab=false"],
        "data.tokenizer.corpus_vocab=false does not apply to data/tokenizer=char (its vocabulary is the corpus's "
        "characters); drop the override",
    ),
    (["data.tokenizer.encoding=cl200k"], "unknown tiktoken encoding 'cl200k'; set data.tokenizer.encoding to one of "),
    # trainer
    (["trainer.devices=512"], "trainer.devices=512 asks for 512 CPU processes but this machine has "),
    (["trainer.precision=fp8"], "invalid trainer config: Precision 'fp8' is invalid. Allowed precision values: "),
    # checkpoints
    (
        [f"ckpt_path={IN}/missing.ckpt"],
        f"ckpt_path={IN}/missing.ckpt does not exist; pass a .ckpt file, e.g. <run>/checkpoints/last.ckpt",
    ),
    ([f"resume={IN}"], f"{IN} has no checkpoints/last.ckpt (the run saved no checkpoint); start a new run instead"),
    ([f"ckpt_path={IN}/truncated.ckpt"], f"cannot read checkpoint {IN}/truncated.ckpt ("),
    ([f"ckpt_path={IN}/garbage.ckpt"], f"cannot read checkpoint {IN}/garbage.ckpt ("),
    ([f"ckpt_path={IN}/crafted.ckpt"], f"cannot read checkpoint {IN}/crafted.ckpt ("),
    (
        [f"ckpt_path={IN}/other_shape.ckpt"],
        f"checkpoint {IN}/other_shape.ckpt holds a different model (d_model 64 -> 32, num_heads 4 -> 2, num_layers 2 -> 1, "
        "checkpoint -> config); drop the overrides that change it, or train a new run without resume/ckpt_path",
    ),
]


@pytest.mark.parametrize("overrides, message", CASES, ids=[" ".join(o) for o, _ in CASES])
def test_bad_input_is_one_line_before_training_and_writes_nothing(
    compose, inputs, tmp_path, monkeypatch, overrides, message
):
    monkeypatch.chdir(tmp_path)  # where a crafted pickle would write pwned.txt
    cfg = compose(*FAST, *(o.replace(IN, str(inputs)) for o in overrides))
    with pytest.raises(AttnlabError) as err:
        train(cfg)
    text = str(err.value)
    assert "\n" not in text
    assert text.startswith(message.replace(IN, str(inputs)))
    if message.endswith("("):  # the damaged-checkpoint line also says what to make of it
        assert text.endswith("); it is damaged or not an attnlab checkpoint")
    run = tmp_path / "run"
    assert not (run / "checkpoints").exists() and not (run / "config.yaml").exists()
    leftovers = [p.name for p in (tmp_path / "cache").glob("*")] if (tmp_path / "cache").exists() else []
    assert all(name.endswith((".tokens", ".json")) and not name.startswith(".") for name in leftovers)  # no temp
    assert not (tmp_path / "pwned.txt").exists()


@pytest.mark.slow
def test_the_command_line_prints_the_line_and_exits_2(tmp_path):
    missing = tmp_path / "outputs" / "no-such-run"
    args = [sys.executable, str(ROOT / "train.py"), f"resume={missing}", f"paths.root={tmp_path}"]
    result = subprocess.run(
        args, capture_output=True, text=True, cwd=ROOT, timeout=300, env={**os.environ, "HYDRA_FULL_ERROR": "0"}
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: resume={missing} is not a folder; pass a run folder such as outputs/<date>/<time>"
    )
    assert "Traceback" not in result.stderr
    assert not missing.exists()  # Hydra was not sent to make it
