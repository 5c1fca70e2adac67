"""A checkpoint written by attnlab 0.1.0 before the sub-packages (tests/fixtures/checkpoint-0.1.0.*,
made by commit 6dbce4f on the seed sample) loads and computes what it computed then."""

import json
from pathlib import Path

import pytest
import torch

from attnlab.model import generate
from attnlab.runs.checkpoint import load_model
from tests.conftest import run_tool

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "checkpoint-0.1.0.ckpt"
EXPECTED = json.loads(FIXTURE.with_suffix(".json").read_text(encoding="utf-8"))


def test_an_old_checkpoint_gives_the_same_logits_and_greedy_text():
    model, tokenizer = load_model(FIXTURE)
    assert tokenizer.vocab_size == EXPECTED["vocab_size"]
    with torch.no_grad():
        logits = model(torch.arange(8).unsqueeze(0))  # (1, 8, V)
    assert logits[0, 0, :8].tolist() == pytest.approx(EXPECTED["logits_of_ids_0_to_7_first_row"], abs=1e-5)
    assert float(logits.double().sum()) == pytest.approx(EXPECTED["logits_sum"], abs=1e-4)
    ids = torch.as_tensor(tokenizer.encode(EXPECTED["prompt"], respell=True).astype("int64"))
    assert ids.tolist() == EXPECTED["prompt_ids"]
    assert [int(t) for t in generate(model, ids, 10, temperature=0.0)] == EXPECTED["greedy_ids"]


def test_an_old_checkpoint_loads_into_the_lightning_module():
    from attnlab.training.lit_gpt import LitGPT

    module = LitGPT.load_from_checkpoint(FIXTURE, map_location="cpu", weights_only=True)
    assert module.tokenizer.decode(EXPECTED["greedy_ids"]) == EXPECTED["greedy_text"]


@pytest.mark.slow
def test_attnlab_generate_continues_with_an_old_checkpoint(tmp_path):
    result = run_tool(
        "generate",
        f"ckpt_path={FIXTURE}",
        f"prompt={EXPECTED['prompt']}",
        "temperature=0",
        "max_new_tokens=10",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout == EXPECTED["prompt"] + EXPECTED["greedy_text"] + "\n"
