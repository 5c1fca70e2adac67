"""attnlab generate, eval, export and attend on a tiny model trained once on the seed sample."""

import io
import json
import subprocess
import sys
from datetime import datetime

import pytest
import torch

import attnlab
import attnlab.tools.attend
from attnlab.errors import CheckpointError, ConfigError, DataError
from attnlab.runs.checkpoint import load_model
from attnlab.tools.attend import attend
from attnlab.tools.eval import evaluate
from attnlab.tools.export import export
from attnlab.tools.generate import generate_text
from tests.conftest import ROOT, SEED_SAMPLE, run_tool
from tests.training.test_train_e2e import FAST

PROMPT = "小沈阳江西"  # from the seed sample: every token is in the corpus vocabulary


def compose(config_name, *overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose(config_name, overrides=list(overrides))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained run folder (config.yaml, checkpoints/) and its final metrics."""
    from attnlab.training.task import train

    tmp = tmp_path_factory.mktemp("tools")
    cfg = compose(
        "config",
        f"paths.root={ROOT}",
        f"paths.output_dir={tmp / 'run'}",
        f"data.cache_dir={tmp / 'cache'}",
        *FAST,
        "~logger",
    )
    metrics = train(cfg)
    return tmp / "run", metrics


# -- generate ----------------------------------------------------------------------------------


def test_generate_is_seeded_streams_the_prompt_and_reports_speed(run):
    folder, _ = run

    def sample(*overrides):
        out, err = io.StringIO(), io.StringIO()
        cfg = compose("generate", f"ckpt_path={folder}", f"prompt='{PROMPT}'", "max_new_tokens=24", *overrides)
        result = generate_text(cfg, out=out, err=err)
        return result, out.getvalue(), err.getvalue()

    a, out_a, err_a = sample("seed=1", "num_samples=2")
    assert out_a.startswith(f"--- sample 1 of 2 ---\n{PROMPT}") and "--- sample 2 of 2 ---" in out_a
    assert out_a.count(PROMPT) == 2 and a["texts"][0] in out_a and a["texts"][1] in out_a
    assert "48 tokens in" in err_a and "tokens/s (KV cache, cpu)" in err_a
    b, out_b, _ = sample("seed=1", "num_samples=2")
    assert out_b == out_a  # same seed, same text
    c, _, _ = sample("seed=2", "num_samples=2")
    assert c["texts"] != a["texts"]
    d, _, err_d = sample("seed=1", "num_samples=2", "use_cache=false")
    assert d["texts"] == a["texts"] and "no cache" in err_d  # the cache changes the speed, not the text

    greedy, _, _ = sample("temperature=0", "echo_prompt=false")
    model, tok = load_model(folder)
    ids = torch.as_tensor(tok.encode(PROMPT)).long().unsqueeze(0)  # (1, T0)
    for _ in range(24):  # the plain argmax loop over the latest window (slide=1)
        nxt = model(ids[:, -model.cfg.context_length :])[:, -1].argmax(-1, keepdim=True)  # (1, 1)
        ids = torch.cat([ids, nxt], dim=1)
    g1, _, _ = sample("temperature=0", "echo_prompt=false", "slide=1")
    assert g1["texts"][0] == tok.decode(ids[0, -24:])
    assert greedy["texts"][0] != ""

    with pytest.raises(ConfigError, match="top_p must be in"):
        sample("top_p=1.5")


def test_generate_stops_a_sample_at_the_end_of_text_token(run, monkeypatch):
    """A model trained on several documents ends a text with <|endoftext|>: the sample stops there,
    the token is not printed, and the speed counts the tokens generated."""
    import attnlab.tools.generate as tool

    folder, _ = run
    _, tokenizer = load_model(folder)
    tokenizer.eot_id = 0  # stands in for a corpus of several documents (the seed sample is one)
    real = tool.model_from_checkpoint
    monkeypatch.setattr(tool, "model_from_checkpoint", lambda checkpoint: (real(checkpoint)[0], tokenizer))
    monkeypatch.setattr(tool, "generate", lambda *a, **k: iter(torch.tensor([[t]]) for t in (5, 7, 0, 9)))
    out, err = io.StringIO(), io.StringIO()
    result = generate_text(compose("generate", f"ckpt_path={folder}", f"prompt='{PROMPT}'"), out=out, err=err)
    assert result["texts"] == [tokenizer.decode([5, 7])] and result["tokens"] == 2
    assert err.getvalue().startswith("2 tokens in")


def test_a_prompt_file_gives_the_same_text_as_the_prompt(run, tmp_path):
    folder, _ = run
    (tmp_path / "prompt.txt").write_text(PROMPT, encoding="utf-8")
    texts = []
    for prompt in (f"prompt='{PROMPT}'", f"prompt_file={tmp_path / 'prompt.txt'}"):
        cfg = compose("generate", f"ckpt_path={folder}", prompt, "max_new_tokens=12")
        texts.append(generate_text(cfg, out=io.StringIO(), err=io.StringIO())["texts"])
    assert texts[0] == texts[1]
    with pytest.raises(ConfigError, match="prompt_file .*missing.txt does not exist"):
        generate_text(compose("generate", f"ckpt_path={folder}", f"prompt_file={tmp_path / 'missing.txt'}"))


@pytest.mark.slow
def test_attnlab_generate_writes_nothing_and_names_unknown_characters(run, tmp_path):
    folder, _ = run
    result = run_tool("generate", f"ckpt_path={folder}", f"prompt='{PROMPT}'", "max_new_tokens=10", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith(PROMPT)
    assert "10 tokens in" in result.stderr.strip().splitlines()[-1]
    bad = run_tool("generate", f"ckpt_path={folder}", "prompt='café'", cwd=tmp_path)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert (
        bad.stderr.strip().splitlines()[-1].startswith("error: cannot spell 'café' with tokens of the training corpus")
    )
    assert list(tmp_path.iterdir()) == []  # no outputs/, no .hydra/, no log file


# -- eval --------------------------------------------------------------------------------------


def test_eval_reproduces_training_val_and_measures_any_text(run, tmp_path, capsys):
    folder, metrics = run
    common = ["trainer.enable_progress_bar=false", "trainer.accelerator=cpu"]
    val = evaluate(compose("eval", f"ckpt_path={folder / 'checkpoints' / 'last.ckpt'}", *common))
    assert val["loss"] == pytest.approx(metrics["val/loss"], abs=1e-5)  # the run's own val split, same metric
    assert val["bpb"] == pytest.approx(metrics["val/bpb"], abs=1e-5)
    assert val["ppl"] == pytest.approx(torch.tensor(val["loss"]).exp().item(), rel=1e-5)
    assert json.loads((folder / "eval" / "last-val.json").read_text()) == val
    assert "eval last.ckpt on" in capsys.readouterr().out

    out = tmp_path / "sample.json"
    text = evaluate(
        compose("eval", f"ckpt_path={folder}", f"data.path={SEED_SAMPLE}", f"out={out}", "data.batch_size=1", *common)
    )
    assert text["tokens"] == 69 and text["windows"] == 5  # 70 tokens: 69 predictions in windows of 16
    assert json.loads(out.read_text())["bpb"] == text["bpb"]

    short = tmp_path / "short.txt"
    short.write_text(PROMPT)
    with pytest.raises(DataError, match="evaluation needs at least context_length\\+1 = 17"):
        evaluate(compose("eval", f"ckpt_path={folder}", f"data.path={short}", *common))


def test_eval_refuses_a_run_whose_corpus_changed(run, tmp_path):
    import shutil

    folder, _ = run
    moved = tmp_path / "run"
    shutil.copytree(folder, moved)
    other = tmp_path / "other.txt"
    other.write_text(SEED_SAMPLE.read_text(encoding="utf-8") + "\nand a new line of English text", encoding="utf-8")
    config = (moved / "config.yaml").read_text()
    (moved / "config.yaml").write_text(config.replace(str(SEED_SAMPLE), str(other)))
    with pytest.raises(DataError, match="has changed since training .* pass data.path="):
        evaluate(compose("eval", f"ckpt_path={moved}", "trainer.enable_progress_bar=false"))


# -- export ------------------------------------------------------------------------------------


@pytest.mark.slow
def test_export_round_trip_without_lightning_or_hydra(run, tmp_path):
    folder, _ = run
    out = export(folder, tmp_path / "export")
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    with pytest.raises(ConfigError, match="already holds an export; pass overwrite=true"):
        export(folder, out)
    export(folder, out, overwrite=True)
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("mine")
    with pytest.raises(ConfigError, match="holds other files \\(todo.txt\\)"):
        export(folder, tmp_path / "notes")
    assert (tmp_path / "notes" / "todo.txt").read_text() == "mine"

    model, tok = load_model(folder)
    ids = torch.as_tensor(tok.encode(PROMPT)).long().unsqueeze(0)  # (1, T0)
    with torch.no_grad():
        torch.save(model(ids), tmp_path / "expected.pt")
    check = f"""
import sys, torch, attnlab
model, tok = attnlab.load({str(out)!r})
ids = torch.as_tensor(tok.encode({PROMPT!r})).long().unsqueeze(0)
with torch.no_grad():
    torch.testing.assert_close(model(ids), torch.load({str(tmp_path / "expected.pt")!r}), rtol=0, atol=0)
assert not model.training and tok.decode(ids[0]) == {PROMPT!r}
loaded = sorted({{m.split('.')[0] for m in sys.modules}} & {{'lightning', 'pytorch_lightning', 'hydra', 'omegaconf'}})
assert not loaded, loaded
print('ok')
"""
    result = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]


@pytest.mark.slow
def test_attnlab_export_format_hf_writes_a_gpt2_that_transformers_loads(run, tmp_path):
    from transformers import GPT2LMHeadModel

    folder, _ = run
    out = export(folder, tmp_path / "export")  # an earlier export, attnlab's format
    with pytest.raises(ConfigError, match="already holds an export; pass overwrite=true"):
        export(folder, out, format="hf")
    done = run_tool("export", f"ckpt_path={folder}", f"out={out}", "format=hf", "overwrite=true", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == (
        f"load it with: transformers.GPT2LMHeadModel.from_pretrained({str(out)!r}); "
        f"its tokenizer: attnlab.load_tokenizer({str(out)!r})"
    )
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json"]
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "gpt2" and config["attnlab"]["source_checkpoint"].endswith(".ckpt")

    hf = GPT2LMHeadModel.from_pretrained(out).eval()
    tokenizer = attnlab.load_tokenizer(out)
    model, _ = load_model(folder)
    ids = torch.as_tensor(tokenizer.encode(PROMPT)).long().unsqueeze(0)  # (1, T0)
    assert tokenizer.decode(ids[0]) == PROMPT
    with torch.no_grad():
        torch.testing.assert_close(hf(ids).logits, model(ids), rtol=0, atol=1e-4)  # (1, T0, V)
    with pytest.raises(CheckpointError, match="is a transformers GPT-2 export \\(format=hf\\); load it with"):
        attnlab.load(out)


def test_export_names_the_formats_it_writes(tmp_path):
    with pytest.raises(ConfigError, match="unknown format='onnx'; use one of attnlab, hf"):
        export(tmp_path / "run", tmp_path / "export", format="onnx")
    assert not (tmp_path / "export").exists()


def test_load_tokenizer_names_a_missing_or_damaged_tokenizer_json(tmp_path):
    with pytest.raises(CheckpointError, match=r"is not an attnlab export \(no tokenizer.json\); write one with"):
        attnlab.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text('{"kind": ')
    with pytest.raises(CheckpointError, match=r": damaged tokenizer.json \(.*\); export it again$"):
        attnlab.load_tokenizer(tmp_path)


# -- attend ------------------------------------------------------------------------------------


class StoppedClock:
    """``datetime`` for code that asks the time: always 2026-12-01 22:10:38."""

    @staticmethod
    def now():
        return datetime(2026, 12, 1, 22, 10, 38)


def test_attend_keeps_the_maps_of_every_call_and_prints_where_they_went(run, capsys, monkeypatch):
    folder, _ = run
    monkeypatch.setattr(attnlab.tools.attend, "datetime", StoppedClock, raising=False)  # calls in one second
    first = attend(compose("attend", f"ckpt_path={folder}"))
    first_bytes = [p.read_bytes() for p in first]
    second = attend(compose("attend", f"ckpt_path={folder}", f"text='{PROMPT}'"))

    calls = [folder / "attention" / "2026-12-01_22-10-38", folder / "attention" / "2026-12-01_22-10-38-2"]
    assert sorted((folder / "attention").iterdir()) == calls
    for call, paths in zip(calls, (first, second)):
        assert paths == [call / name for name in ("layer_0.png", "layer_0_mean.png", "attention.html")]  # one layer
    assert [p.read_bytes() for p in first] == first_bytes  # the second call left the first's maps alone
    assert [p.read_bytes() for p in second] != first_bytes  # another text, other maps
    assert capsys.readouterr().out.splitlines() == [str(p) for p in first + second]


def test_eval_joins_a_folders_documents_with_the_end_of_text_token_as_training_does(tmp_path):
    import numpy as np

    from attnlab.data.tokenizer import CharTokenizer, CorpusVocabTokenizer
    from attnlab.tools.eval import text_ids

    (tmp_path / "a.txt").write_text("ab", encoding="utf-8")
    (tmp_path / "b.txt").write_text("ba", encoding="utf-8")
    base = CharTokenizer()
    with_eot = CorpusVocabTokenizer(base, np.array([ord("a"), ord("b"), base.eot_id]))
    assert text_ids(str(tmp_path), with_eot).tolist() == [0, 1, with_eot.eot_id, 1, 0]
    one_document = CorpusVocabTokenizer(base, np.array([ord("\n"), ord("a"), ord("b")]))  # no end-of-text id
    assert one_document.decode(text_ids(str(tmp_path), one_document)) == "ab\n\nba"
