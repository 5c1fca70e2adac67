"""A smoke test of `make bench`'s code paths: one repeat of tiny shapes, never the real measurement."""

import json

import pytest

from bench import budget as bench_budget
from bench import run as bench_run
from tests.conftest import ROOT


@pytest.mark.slow
def test_quick_bench_writes_results_and_only_the_marked_part_of_the_doc(tmp_path):
    doc = tmp_path / "benchmarks.md"
    doc.write_text(
        f"# Benchmarks\n\nhand-written intro\n\n{bench_run.BEGIN}\nold table\n{bench_run.END}\n\n"
        "## Hand-written section\n\nkept\n",
        encoding="utf-8",
    )
    results_path = tmp_path / "results.json"
    bench_run.main(["--quick", "--results", str(results_path), "--doc", str(doc)])

    results = json.loads(results_path.read_text())
    assert results["quick"] is True and results["machine"]["torch"]
    plain, compiled = results["sections"]["train_step"]["rows"]
    assert not plain["compile"] and compiled["compile"]
    for step in (plain, compiled):
        assert step["lightning_ms"] > 0 and step["hand_ms"] > 0
        assert step["lightning_first_step_s"] > 0 and step["hand_first_step_s"] > 0
        # the same model, batches and optimizer: the two loops end on the same loss
        assert step["final_loss"]["lightning"] == pytest.approx(step["final_loss"]["hand"], rel=1e-5)
    # compiling costs its first step: more than a timed step
    assert compiled["lightning_first_step_s"] > compiled["lightning_ms"] / 1e3
    cells = results["sections"]["attention"]["lengths"]
    assert {(r["T"], r["impl"]) for r in cells} == {(32, impl) for impl in ("naive", "explicit", "sdpa")}
    # each cell's memory read in its own process: forward+backward holds at least the layer's 1 MiB of
    # weight gradients, which a reading taken after other cells freed memory could miss
    assert all(r["forward_backward_peak_mib"] > 0.5 for r in cells)
    (bf16_cell,) = results["sections"]["attention"]["training_shape"]["rows"]  # a training batch under bf16 autocast
    assert (
        bf16_cell["T"] == 32 and bf16_cell["batch"] == 8 and bf16_cell["explicit_ms"] > 0 and bf16_cell["sdpa_ms"] > 0
    )
    assert {r["tokenizer"] for r in results["sections"]["data"]["rows"]} == {"cl100k corpus vocabulary", "char"}
    generation = results["sections"]["generation"]["rows"]
    assert [r["context_length"] for r in generation] == [8, 16]
    assert all(
        r["cache_tokens_per_s"] > 0 and r["no_cache_tokens_per_s"] > 0 and r["cache_step_ms"] > 0 for r in generation
    )
    budget = results["sections"]["budget"]
    assert budget["budget"] == "00:00:00:02" and [r["config"] for r in budget["rows"]] == ["experiment=speedrun_cpu"]
    assert all(r["steps"] > 0 and 0 < r["val_bpb"] < 10 for r in budget["rows"])  # each run trained, then validated
    (gpu_row,) = results["sections"]["gpu"]["rows"]  # no CUDA: the tiny CPU smoke run of the same code
    assert gpu_row["tokens_per_s"] > 0 and gpu_row["mfu"] is None
    heads = results["sections"]["head_scores"]  # one callbacks.heads measurement against one validation pass
    assert heads["validation_s"] > 0 and heads["scores_s"] > 0 and heads["callback_s"] > 0 and heads["images"] == 7
    assert heads["share"] == pytest.approx(heads["callback_s"] / heads["validation_s"])  # one round: its ratio
    seq2seq = results["sections"]["seq2seq"]
    (s2s_step,) = seq2seq["steps"]  # quick: fp32 only
    assert s2s_step["lightning_ms"] > 0 and s2s_step["hand_attnlab_ms"] > 0 and s2s_step["hand_ms"] > 0
    # nn.Transformer from Lightning's initial weights on the same batches: as many parameters, the same loss
    assert s2s_step["parameters"]["attnlab"] == s2s_step["parameters"]["torch"]
    losses = s2s_step["final_loss"]
    assert losses["lightning"] == pytest.approx(losses["hand_attnlab"], rel=1e-6)  # the same model
    assert losses["lightning"] == pytest.approx(losses["hand"], rel=1e-5)
    preset, decoding = seq2seq["preset"], seq2seq["decoding"]
    assert preset["steps"] > 0 and 0 <= preset["exact_match"] <= 1 and preset["max_time"] == "00:00:00:01"
    assert [r["beams"] for r in decoding["rows"]] == [1, 4] and all(r["pairs_per_s"] > 0 for r in decoding["rows"])
    assert decoding["rows"][0]["exact_match"] == pytest.approx(preset["exact_match"])  # greedy: the run's own figure

    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\nhand-written intro\n\n" + bench_run.BEGIN)
    assert text.endswith(bench_run.END + "\n\n## Hand-written section\n\nkept\n")
    assert "old table" not in text and "Quick mode" in text and text.count(bench_run.BEGIN) == 1
    assert (
        "| smoke | fp32 |" in text
        and "| smoke | fp32 + compile |" in text
        and "| 32 | sdpa |" in text
        and "| 32 | 8 |" in text
    )
    assert "### 4. Quality at a budget" in text and "| experiment=speedrun_cpu |" in text
    assert "### 5. Generation" in text and "| 16 |" in text and "### 6. GPU" in text
    assert "### 7. Per-head scores" in text and "| `heads`: all of it (with the images) |" in text
    assert "What each choice" not in text  # the ablation only when asked for
    assert "### 9. Encoder–decoder" in text and "| greedy |" in text and "| beam search, 4 beams |" in text


def test_only_measures_the_sections_named_and_keeps_the_rest_from_this_machine(tmp_path, monkeypatch):
    from bench.common import machine

    results_path, doc = tmp_path / "results.json", tmp_path / "benchmarks.md"
    before = {name: {"wall_s": 1.0, "old": True} for name in bench_run.SECTIONS if name != "head_scores"}
    results_path.write_text(json.dumps({"machine": machine(), "sections": before}))
    monkeypatch.setattr(bench_run, "run_section", lambda name, quick: {"wall_s": 2.0, "new": True})
    monkeypatch.setattr(bench_run, "render", lambda results: "tables")
    bench_run.main(["--only", "head_scores", "--results", str(results_path), "--doc", str(doc)])
    sections = json.loads(results_path.read_text())["sections"]
    assert sections["head_scores"]["new"] and all(sections[name]["old"] for name in before)  # a new section alone

    del before["gpu"]  # a section neither measured now nor kept from before: refused
    results_path.write_text(json.dumps({"machine": machine(), "sections": before}))
    with pytest.raises(SystemExit) as exit_:
        bench_run.main(["--only", "head_scores", "--results", str(results_path), "--doc", str(doc)])
    assert exit_.value.code == 2


def test_ablation_table_reads_each_choice_against_the_preset():
    rows = [
        {"config": "preset", "val_bpb": 2.10, "val_loss": 4.8, "steps": 300},
        {"config": "RoPE → sinusoidal table", "val_bpb": 2.18, "val_loss": 5.0, "steps": 310},
    ]
    text = bench_budget.ablation_table({"budget": "00:00:01:30", "rows": rows})
    assert "| preset | 2.1000 |  | 300 |" in text and "| RoPE → sinusoidal table | 2.1800 | +0.0800 | 310 |" in text


def test_quick_mode_refuses_to_overwrite_the_real_results():
    real = ROOT / "bench" / "results.json"
    before = real.read_bytes() if real.exists() else None
    with pytest.raises(SystemExit) as exit_:
        bench_run.main(["--quick"])
    assert exit_.value.code == 2
    assert (real.read_bytes() if real.exists() else None) == before


def test_naive_attention_matches_both_implementations():
    import torch

    from attnlab.model import CausalSelfAttention, ModelConfig
    from bench.attention import naive_attention

    attn = CausalSelfAttention(ModelConfig(vocab_size=1, context_length=9, d_model=16, num_heads=4)).eval()
    x = torch.randn(2, 9, 16)
    with torch.no_grad():
        for impl in ("explicit", "sdpa"):
            torch.testing.assert_close(naive_attention(attn, x), attn(x, impl=impl), atol=1e-5, rtol=1e-5)


def test_torch_transformer_computes_what_the_encoder_decoder_computes():
    """bench.seq2seq's nn.Transformer with the encoder–decoder's weights: the same logits at every real
    target position, with padding on both sides."""
    import torch

    from attnlab.model import EncoderDecoder, TransformerConfig
    from bench.seq2seq import TorchTransformer

    cfg = TransformerConfig(
        src_vocab_size=11,
        tgt_vocab_size=11,
        d_model=16,
        num_heads=2,
        num_encoder_layers=2,
        num_decoder_layers=2,
        activation="relu",
        share_embeddings=True,
        src_context_length=9,
        tgt_context_length=7,
    )
    torch.manual_seed(0)
    model = EncoderDecoder(cfg).eval()
    torch_model = TorchTransformer(cfg).eval()
    torch_model.load_from(model)
    assert torch_model.lm_head.weight is torch_model.embedding.weight
    assert sum(p.numel() for p in torch_model.parameters()) == model.num_parameters()
    src, tgt = torch.randint(0, 11, (3, 9)), torch.randint(0, 11, (3, 7))
    src_mask = torch.arange(9) < torch.tensor([[9], [4], [1]])  # (3, 9) True at real tokens
    tgt_mask = torch.arange(7) < torch.tensor([[2], [7], [5]])  # (3, 7)
    with torch.no_grad():
        ours, theirs = model(src, tgt, src_mask, tgt_mask), torch_model(src, tgt, src_mask, tgt_mask)  # (3, 7, V)
    torch.testing.assert_close(theirs[tgt_mask], ours[tgt_mask], atol=1e-5, rtol=1e-5)
