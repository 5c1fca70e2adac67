"""attnlab heads on a tiny model trained once on the seed sample (2 layers x 4 heads, context 16)."""

import copy
import csv
import json
import shutil

import pytest
import torch
import torch.nn.functional as F

from attnlab.errors import CheckpointError, ConfigError, DataError
from attnlab.observe.ablation import ABLATION_SCORES
from attnlab.observe.head_scores import spread_windows
from attnlab.observe.heads import SCORES
from attnlab.runs.checkpoint import load_model
from attnlab.tools.eval import text_ids
from attnlab.tools.head_report import COLUMNS, head_report
from tests.conftest import ROOT, SEED_SAMPLE, run_tool
from tests.tools.test_tools import compose
from tests.training.test_train_e2e import FAST

SHAPE = ["model.num_layers=2", "model.num_heads=4"]  # 8 heads: enough for an order to mean something
FILES = {"heads.json", "heads.csv", "heads.md", *(f"{name}.png" for name in (*ABLATION_SCORES, *SCORES))}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A trained run folder (config.yaml, checkpoints/)."""
    from attnlab.training.task import train

    tmp = tmp_path_factory.mktemp("heads")
    train(
        compose(
            "config",
            f"paths.root={ROOT}",
            f"paths.output_dir={tmp / 'run'}",
            f"data.cache_dir={tmp / 'cache'}",
            *FAST,
            *SHAPE,
            "~logger",
        )
    )
    return tmp / "run"


def heads(folder, *overrides):
    return head_report(compose("heads", f"ckpt_path={folder}", "device=cpu", *overrides))


def markdown_rows(path):
    """The table rows of heads.md: {column: cell} each, in the file's order."""
    lines = [line for line in path.read_text().splitlines() if line.startswith("| ")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def test_the_report_has_a_row_per_head_the_table_sorted_by_importance(run, capsys):
    report = heads(run, "top=3")
    out = run / "heads"
    assert {p.name for p in out.iterdir()} == FILES
    assert report["data"].endswith("validation split") and report["windows"] == 1 and report["tokens"] == 16

    saved = json.loads((out / "heads.json").read_text())
    assert saved["config"]["tokens"] == 4096 and saved["base_loss"] == report["base_loss"]
    assert [(row["layer"], row["head"]) for row in saved["heads"]] == [(i, h) for i in range(2) for h in range(4)]
    with open(out / "heads.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8 and tuple(rows[0]) == COLUMNS
    for row, kept in zip(rows, saved["heads"]):
        assert {k: float(v) for k, v in row.items()} == pytest.approx(kept, abs=1e-12)

    table = markdown_rows(out / "heads.md")
    assert [int(row["rank"]) for row in table] == list(range(1, 9))
    zero = [float(row["zero_ablation"]) for row in table]
    assert zero == sorted(zero, reverse=True) and len(set(zero)) > 1
    assert {(int(row["layer"]), int(row["head"])) for row in table} == {(i, h) for i in range(2) for h in range(4)}

    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith(f"base loss {report['base_loss']:.4f} on 16 tokens")
    top = max(saved["heads"], key=lambda row: row["zero_ablation"])
    assert printed[2].startswith(f"  layer {top['layer']} head {top['head']}  {top['zero_ablation']:+.4f}")
    assert len(printed) == 2 + 3 + len(FILES) and printed[-1].endswith(".png")


def test_the_loss_increase_is_the_weight_edit_on_the_texts_windows_whatever_the_batch(run, tmp_path):
    one = heads(run, f"data.path={SEED_SAMPLE}", f"out_dir={tmp_path / 'one'}", "data.batch_size=1")
    many = heads(run, f"data.path={SEED_SAMPLE}", f"out_dir={tmp_path / 'many'}", "tokens=40")
    assert one["data"] == str(SEED_SAMPLE) and one["windows"] == 4 and one["tokens"] == 64  # 70 ids: 4 windows of 16
    assert many["windows"] == 2 and {p.name for p in (tmp_path / "one").iterdir()} == FILES  # tokens=40: 2 windows

    model, tokenizer = load_model(run)
    windows = spread_windows(text_ids(str(SEED_SAMPLE), tokenizer), 17, 4)  # (4, T+1)
    hs = model.cfg.head_size
    for row in one["heads"]:
        edited = copy.deepcopy(model)
        with torch.no_grad():
            edited.blocks[row["layer"]].attn.out_proj.weight[:, row["head"] * hs : (row["head"] + 1) * hs] = 0.0
            loss = F.cross_entropy(edited(windows[:, :-1]).flatten(0, 1), windows[:, 1:].flatten()).item()
        assert row["zero_ablation"] == pytest.approx(loss - one["base_loss"], abs=2e-6)
    again = heads(run, f"data.path={SEED_SAMPLE}", f"out_dir={tmp_path / 'again'}")  # batches of 32: one pass
    for a, b in zip(one["heads"], again["heads"]):
        assert a == pytest.approx(b, abs=2e-6)  # the same fixed inputs, batched differently


def test_bad_input_is_one_line(run, tmp_path):
    with pytest.raises(ConfigError, match=r"^tokens=8 is less than one window of the model's context_length=16; "):
        heads(run, "tokens=8")
    for key in ("data.batch_size", "score_windows", "in_context_windows"):
        with pytest.raises(ConfigError, match=f"^{key} must be a positive integer, got 0$"):
            heads(run, f"{key}=0")
    with pytest.raises(CheckpointError, match="does not exist; pass a run folder or a .ckpt file"):
        heads(tmp_path / "no-such-run")
    checkpoint = torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)
    del checkpoint["tokenizer"]
    torch.save(checkpoint, tmp_path / "no-tokenizer.ckpt")
    with pytest.raises(CheckpointError, match="has no tokenizer state"):
        heads(tmp_path / "no-tokenizer.ckpt")
    short = tmp_path / "short.txt"
    short.write_text("小沈阳")
    with pytest.raises(DataError, match=r"has \d+ tokens; the head report needs at least context_length\+1 = 17"):
        heads(run, f"data.path={short}")


@pytest.mark.slow
def test_attnlab_heads_writes_into_the_run_and_says_where(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")  # a copy of the trained run: the tool writes into it
    done = run_tool("heads", "ckpt_path=run", "top=2", cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    printed = done.stdout.strip().splitlines()
    assert printed[0].startswith("base loss ") and printed[1].startswith("most important heads")
    assert printed[4:] == [f"run/heads/{name}" for name in ("heads.json", "heads.csv", "heads.md")] + [
        f"run/heads/{name}.png" for name in (*ABLATION_SCORES, *SCORES)
    ]
    assert all((tmp_path / path).is_file() for path in printed[4:])
    assert "16 tokens in 1 window of 16; 8 heads ablated 2 ways, 17 passes" in done.stderr
    for args, line in [  # (an unknown key's line: the bootstrap every tool shares, tests/test_preflight.py)
        (["ckpt_path=run", "tokens=4"], "error: tokens=4 is less than one window of the model's context_length=16"),
        (["ckpt_path=gone"], "error: checkpoint gone does not exist; pass a run folder or a .ckpt file"),
    ]:
        bad = run_tool("heads", *args, cwd=tmp_path)
        assert bad.returncode == 2 and bad.stdout == "", bad.stderr
        assert bad.stderr.count("\n") == 1 and bad.stderr.startswith(line), bad.stderr


def test_records_of_json_lines_are_measured_by_their_text_field(run, tmp_path, seed_text):
    records = tmp_path / "records.jsonl"
    records.write_text(json.dumps({"id": 1, "body": seed_text}, ensure_ascii=False) + "\n", encoding="utf-8")
    from_records = heads(run, f"data.path={records}", "data.text_field=body", f"out_dir={tmp_path / 'jsonl'}")
    from_text = heads(run, f"data.path={SEED_SAMPLE}", f"out_dir={tmp_path / 'txt'}")
    assert from_records["tokens"] == from_text["tokens"] and from_records["base_loss"] == from_text["base_loss"]
