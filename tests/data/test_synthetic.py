"""The generated corpus ``repeats``: the same bytes from the same seed, each line a passage twice,
one cl100k token per group of three digits, written once under the data folder."""

import re

import numpy as np

from attnlab.data import corpus, synthetic
from attnlab.data.datamodule import TextDataModule
from attnlab.data.synthetic import PASSAGE_GROUPS, prepare_repeats, repeated_passages, repeats_text, write_repeats


def test_the_same_seed_gives_the_same_text_and_another_seed_another():
    a, b = (repeats_text(repeated_passages(50, seed=3)) for _ in range(2))
    assert a == b and a != repeats_text(repeated_passages(50, seed=4))


def test_each_line_is_one_passage_of_three_digit_groups_written_twice():
    lines = repeats_text(repeated_passages(200, seed=0)).splitlines()
    assert len(lines) == 200
    lengths = set()
    for line in lines:
        first, second = line.split(" ")
        assert first == second and re.fullmatch(r"\d+", first) and len(first) % 3 == 0
        lengths.add(len(first) // 3)
    assert min(lengths) == PASSAGE_GROUPS[0] and max(lengths) == PASSAGE_GROUPS[1]  # the whole range is drawn


def test_cl100k_reads_a_group_as_one_token(tmp_path):
    path = write_repeats(tmp_path / "repeats.txt", lines=300, seed=0)
    data = TextDataModule(path=str(path), context_length=16, batch_size=2, cache_dir=str(tmp_path / "cache"))
    data.setup()
    ids = np.concatenate([data.train_ids, data.val_ids])
    groups = sum(len(p) for p in repeated_passages(300, seed=0))
    assert len(ids) == 2 * groups + 2 * 300  # each group twice, a space and a newline per line
    assert data.vocab_size <= 1002 and data.tokenizer.decode(ids[:3]) == path.read_text()[:9]


def test_the_named_corpus_is_written_once_under_the_data_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(synthetic, "REPEATS_LINES", 20)
    assert corpus.main(["repeats", "--data-dir", str(tmp_path)]) == 0
    text = tmp_path / "repeats" / "repeats.txt"
    assert text.read_text() == repeats_text(repeated_passages(20, synthetic.REPEATS_SEED))
    assert "repeats: 1 files" in capsys.readouterr().out
    text.write_text("kept\n")
    assert prepare_repeats(tmp_path / "repeats") == tmp_path / "repeats" and text.read_text() == "kept\n"
    assert [p.name for p in (tmp_path / "repeats").iterdir()] == ["repeats.txt"]  # no temporary file left
