"""The token cache at scale: streamed in pieces, a raw token file and its sidecar, memory-mapped,
keyed by the files' manifest, documents joined by the end-of-text token, bad input and a full disk
as one line with nothing left behind."""

import errno
import gzip
import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

import attnlab.data.corpus as corpus_mod
import attnlab.data.formats as formats_mod
import attnlab.data.token_cache as cache_mod
import attnlab.runs.atomic
from attnlab.data.corpus import open_corpus
from attnlab.data.datamodule import DataConfig
from attnlab.data.formats import read_pieces
from attnlab.data.token_cache import cache_key, cache_path, load_or_build_tokens
from attnlab.data.token_file import read_token_file, sidecar_of
from attnlab.data.tokenizer import EOT_TEXT, CharTokenizer, CorpusVocabTokenizer, TiktokenTokenizer
from attnlab.data.windows import RandomWindows, SequentialWindows
from attnlab.errors import ConfigError, DataError, StorageError

LINES = [
    "ROMEO: But soft! what light through yonder window breaks?",
    "  It is the east, and Juliet is the sun.",  # a line that starts with spaces
    "",
    "Arise, fair sun, and kill the envious moon,!",
    "\tWho is already sick and pale with grief, 沈阳 é",
    "123 4567 -- 'tis",
]


@pytest.fixture(scope="module")
def cl100k():
    return TiktokenTokenizer("cl100k_base")


def text_of(n: int, seed: int = 0) -> str:
    rng = np.random.default_rng(seed)
    return "\n".join(LINES[i] for i in rng.integers(0, len(LINES), n)) + "\n"


def folder(tmp_path: Path, texts: list[str]) -> Path:
    root = tmp_path / "corpus"
    for i, text in enumerate(texts):
        (root / f"{i % 3}").mkdir(parents=True, exist_ok=True)
        (root / f"{i % 3}" / f"{i:02}.txt").write_text(text, encoding="utf-8")
    return root


def expected_base_ids(enc, documents: list[str], eot: int) -> np.ndarray:
    parts = []
    for i, doc in enumerate(documents):
        parts += [[eot]] * (i > 0) + [enc(doc)]
    return np.concatenate([np.asarray(p, dtype=np.int64) for p in parts])


def cache_files(cache: Path) -> list[str]:
    return sorted(p.name for p in cache.iterdir()) if cache.exists() else []


def test_the_cache_is_a_raw_token_file_and_a_sidecar_memory_mapped(tmp_path, cl100k):
    texts = [text_of(40, seed) for seed in range(5)]
    root = folder(tmp_path, texts)
    corpus = open_corpus(root)
    tokens = load_or_build_tokens(corpus, cl100k, tmp_path / "cache")
    documents = [(root / p).read_text(encoding="utf-8") for p, _, _ in corpus.manifest()]
    np.testing.assert_array_equal(tokens.base_ids(), expected_base_ids(cl100k.enc.encode_ordinary, documents, 100257))
    assert isinstance(tokens.ids, np.memmap) and tokens.ids.dtype == np.uint16 and not tokens.ids.flags.writeable

    path = cache_path(tmp_path / "cache", cache_key(corpus, cl100k, None, True))
    assert cache_files(tmp_path / "cache") == [path.stem + ".json", path.name]
    assert path.read_bytes() == np.asarray(tokens.ids).astype("<u2").tobytes()  # the ids, nothing else
    meta = json.loads(sidecar_of(path).read_text())
    assert meta["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()  # what sha256sum prints
    assert (meta["format"], meta["dtype"], meta["num_tokens"]) == ("attnlab-tokens/1", "uint16", len(tokens.ids))
    assert meta["vocab"] == tokens.vocab.tolist() and meta["key"]["separator"] == {"text": EOT_TEXT, "base_id": 100257}
    assert [row[0] for row in meta["key"]["source"]["files"]] == [
        "0/00.txt",
        "0/03.txt",
        "1/01.txt",
        "1/04.txt",
        "2/02.txt",
    ]

    base = load_or_build_tokens(corpus, cl100k, tmp_path / "cache", corpus_vocab=False)  # the base ids themselves
    assert base.ids.dtype == np.uint32 and base.vocab is None
    np.testing.assert_array_equal(base.ids, tokens.base_ids())


def test_a_start_with_a_cached_corpus_reads_none_of_the_text(tmp_path, cl100k, monkeypatch):
    root = folder(tmp_path, [text_of(30, seed) for seed in range(4)])
    first = np.array(load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "cache").ids)
    monkeypatch.setattr(corpus_mod, "read_pieces", lambda *a: pytest.fail("read the text"))
    monkeypatch.setattr(formats_mod, "open_file", lambda path: pytest.fail(f"opened {path}"))
    monkeypatch.setattr(cache_mod, "build_tokens", lambda *a: pytest.fail("tokenized again"))
    np.testing.assert_array_equal(load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "cache").ids, first)


@pytest.mark.parametrize("change", ["append", "touch", "add", "remove", "rename"])
def test_a_changed_added_or_removed_file_makes_a_new_cache(tmp_path, cl100k, monkeypatch, change):
    root = folder(tmp_path, [text_of(20, seed) for seed in range(4)])
    load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "cache")
    victim = root / "1" / "01.txt"
    if change == "append":
        victim.write_text(victim.read_text() + "more\n", encoding="utf-8")
    elif change == "touch":  # same size and text, another mtime: rebuilt all the same
        stat = victim.stat()
        os.utime(victim, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1))
    elif change == "add":
        (root / "1" / "09.txt").write_text("a new play\n", encoding="utf-8")
    elif change == "remove":
        victim.unlink()
    else:
        victim.rename(root / "1" / "08.txt")
    builds = []
    build = cache_mod.build_tokens
    monkeypatch.setattr(cache_mod, "build_tokens", lambda *a: builds.append(1) or build(*a))
    corpus = open_corpus(root)
    tokens = load_or_build_tokens(corpus, cl100k, tmp_path / "cache")
    assert builds == [1] and len(list((tmp_path / "cache").glob("*.tokens"))) == 2
    documents = [(root / p).read_text(encoding="utf-8") for p, _, _ in corpus.manifest()]
    np.testing.assert_array_equal(tokens.base_ids(), expected_base_ids(cl100k.enc.encode_ordinary, documents, 100257))


def test_the_key_holds_the_tokenizer_the_cap_the_ids_the_separator_and_the_field(tmp_path, cl100k):
    (tmp_path / "a.jsonl").write_text('{"text": "a", "body": "b"}\n', encoding="utf-8")
    corpus, char = open_corpus(tmp_path / "a.jsonl"), CharTokenizer()
    keys = [
        cache_key(corpus, cl100k, None, True),
        cache_key(corpus, char, None, True),
        cache_key(corpus, cl100k, 4096, True),
        cache_key(corpus, cl100k, None, False),
        cache_key(open_corpus(tmp_path / "a.jsonl", text_field="body"), cl100k, None, True),
    ]
    other_eot = dict(keys[0], separator={"text": EOT_TEXT, "base_id": 100276})
    names = {cache_path(tmp_path, key).name for key in [*keys, other_eot]}
    assert len(names) == 6
    assert cache_path(tmp_path, keys[2]).name.endswith("-cl100k_base-max4096.tokens")
    assert cache_path(tmp_path, keys[3]).name.endswith("-cl100k_base-base.tokens")


def test_pieces_of_a_large_text_tokenize_exactly_as_the_whole(tmp_path, cl100k):
    text = text_of(3000)  # ~110 kB
    path = tmp_path / "big.txt"
    path.write_text(text, encoding="utf-8")
    whole = cl100k.enc.encode_ordinary(text)
    for chunk_bytes in (4096, 9999):
        pieces = list(read_pieces(path, "text", chunk_bytes))
        assert len(pieces) > 10 and [p.starts for p in pieces] == [True] + [False] * (len(pieces) - 1)
        assert max(len(p.text.encode()) for p in pieces) < 2 * chunk_bytes
        assert "".join(p.text for p in pieces) == text
        assert [i for p in pieces for i in cl100k.enc.encode_ordinary(p.text)] == whole
    line = "沈阳é" * 20_000  # one line, no newline: cut between characters
    path.write_text(line, encoding="utf-8")
    pieces = [p.text for p in read_pieces(path, "text", 4096)]
    assert len(pieces) > 5 and "".join(pieces) == line


def test_bad_input_in_a_large_file_names_the_line_or_offset_of_the_whole_file(tmp_path):
    records = [json.dumps({"text": f"record {i} " + "x" * (i % 50)}) for i in range(5000)]
    records[4320] = '{"text": "broken'
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(("\n".join(records) + "\n").encode()))
    with pytest.raises(DataError, match=r"line 4321 is not JSON \(Unterminated string"):
        list(read_pieces(path, "text", 1000))
    records[4320] = json.dumps({"body": "no text"})
    path.write_bytes(gzip.compress(("\n".join(records) + "\n").encode()))
    with pytest.raises(DataError, match=r"line 4321 has no field 'text' \(its fields: body\)"):
        list(read_pieces(path, "text", 1000))
    data = text_of(3000).encode()
    at = data.index(b"\nROMEO", 70_000) + 1  # between two ASCII characters
    (tmp_path / "b.txt").write_bytes(data[:at] + "é".encode("latin-1") + data[at:])
    with pytest.raises(DataError, match=rf"'.*b.txt' is not UTF-8 \(byte 0xe9 at offset {at}\)"):
        list(read_pieces(tmp_path / "b.txt", "text", 4096))
    head = ("\n".join(records[:300]) + "\n").encode()
    (tmp_path / "c.jsonl").write_bytes(head + b'{"text": "Oph\xe9lie"}\n')
    with pytest.raises(DataError, match=rf"byte 0xe9 at offset {len(head) + 13}, line 301\)"):
        list(read_pieces(tmp_path / "c.jsonl", "text", 1000))


@pytest.mark.parametrize("bad", ["truncated-gz", "whitespace"])
def test_bad_input_found_mid_build_leaves_nothing_cached(tmp_path, cl100k, bad):
    root = folder(tmp_path, [text_of(200, seed) for seed in range(4)])
    if bad == "truncated-gz":
        whole = gzip.compress(text_of(5000).encode())
        (root / "2" / "zz.txt.gz").write_bytes(whole[: len(whole) // 2])
        match = "is truncated"
    else:
        for file in root.rglob("*.txt"):
            file.write_text(" \n\t\n", encoding="utf-8")
        match = "holds no text"
    with pytest.raises(DataError, match=match):
        load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "cache")
    assert cache_files(tmp_path / "cache") == []  # no temporary file, not even the folder


class FullDisk(io.FileIO):
    """A file on a disk with room for ``room`` more bytes, then ENOSPC (a short write first)."""

    def __init__(self, path, mode, room: int):
        super().__init__(path, mode.replace("b", ""))
        self.room = room

    def write(self, data) -> int:
        if self.room == 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        n = super().write(memoryview(data).cast("B")[: self.room])
        self.room -= n
        return n


@pytest.mark.parametrize("stage", ["first pass", "token file"])
def test_a_full_disk_while_writing_removes_the_partial_file_and_names_the_room_needed(
    tmp_path, cl100k, monkeypatch, stage
):
    root = folder(tmp_path, [text_of(300, seed) for seed in range(4)])
    module = cache_mod if stage == "first pass" else attnlab.runs.atomic

    def opened(path, mode="r", *args, **kwargs):
        if str(path).endswith(".tmp") and ".tokens." in Path(path).name:
            return io.BufferedRandom(FullDisk(path, "w+b", room=1000))
        return open(path, mode, *args, **kwargs)

    monkeypatch.setattr(module, "open", opened, raising=False)
    with pytest.raises(StorageError) as refused:
        load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "cache")
    line = str(refused.value)
    assert "\n" not in line and line.startswith(f"cannot write {tmp_path / 'cache'}/")
    assert ".tokens: no space left on its filesystem (it needs about " in line
    assert cache_files(tmp_path / "cache") == []


def test_the_end_of_text_token_joins_documents_and_collides_with_no_text(tmp_path, cl100k):
    docs = [f"doc {i} says {EOT_TEXT} as text" for i in range(3)]
    path = tmp_path / "a.jsonl"
    path.write_text("".join(json.dumps({"text": d}) + "\n" for d in docs), encoding="utf-8")
    char = CharTokenizer()
    assert char.eot_id == 0x110000 and char.decode([ord("a"), char.eot_id]) == "a" + EOT_TEXT
    for base in (cl100k, char):
        tokens = load_or_build_tokens(open_corpus(path), base, tmp_path / "cache")
        tok = CorpusVocabTokenizer(base, tokens.vocab)
        assert int((tokens.ids == tok.eot_id).sum()) == 2  # between documents only, never from the text
        assert tok.decode(tokens.ids) == EOT_TEXT.join(docs)
        assert tok.token_bytes()[tok.eot_id] == 0  # no bytes of text: bits per byte count the text's
        assert base.eot_id not in base.encode(EOT_TEXT).tolist()
    one = tmp_path / "one.txt"
    one.write_text(docs[0], encoding="utf-8")
    assert (
        CorpusVocabTokenizer(cl100k, load_or_build_tokens(open_corpus(one), cl100k, tmp_path / "c").vocab).eot_id
        is None
    )
    capped = load_or_build_tokens(open_corpus(path), cl100k, tmp_path / "cache", max_vocab=257 + 1)
    assert 100257 in capped.vocab.tolist()  # kept under any cap: no bytes spell it


@pytest.mark.slow
def test_worker_processes_give_the_ids_one_process_gives(tmp_path, cl100k, monkeypatch):
    root = folder(tmp_path, [text_of(2000, seed) for seed in range(6)])
    one = np.array(load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "one", num_proc=1).ids)
    monkeypatch.setattr(cache_mod, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(cache_mod, "CHUNK_CHARS", 10_000)  # many chunks, several in flight
    two = load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "two", num_proc=2)
    np.testing.assert_array_equal(two.ids, one)


def _die(chunk):
    os._exit(3)  # as the kernel's out-of-memory killer ends a worker


@pytest.mark.slow
def test_a_worker_that_dies_stops_the_build_with_one_line_and_leaves_nothing(tmp_path, cl100k, monkeypatch):
    import attnlab.data.pool as pool_mod

    root = folder(tmp_path, [text_of(200, seed) for seed in range(3)])
    monkeypatch.setattr(cache_mod, "PARALLEL_BYTES", 0)
    monkeypatch.setattr(pool_mod, "encode_chunk", _die)
    with pytest.raises(
        DataError, match=r"^a tokenizer process ended abruptly \(killed for memory\? .*data.num_proc=1$"
    ):
        load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "cache", num_proc=2)
    assert cache_files(tmp_path / "cache") == []


def test_a_slow_build_shows_a_progress_bar_on_stderr(tmp_path, cl100k, monkeypatch, capsys):
    root = folder(tmp_path, [text_of(50, seed) for seed in range(3)])
    load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "quick")
    assert capsys.readouterr().err == ""  # a build of a moment shows nothing
    monkeypatch.setattr(cache_mod, "PROGRESS_AFTER_S", 0)
    load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "slow")
    err = capsys.readouterr().err
    assert "tokenizing corpus" in err and "B/s" in err and "100%" in err


def test_the_windows_read_memory_mapped_ids(tmp_path, cl100k):
    root = folder(tmp_path, [text_of(100, seed) for seed in range(3)])
    ids = load_or_build_tokens(open_corpus(root), cl100k, tmp_path / "cache").ids  # (N,) np.memmap
    train, val = ids[:2000], ids[2000:2500]  # views, as TextDataModule makes them
    x, y = RandomWindows(train, 8, 4, seed=0).batch(3)
    x_, y_ = RandomWindows(np.array(train), 8, 4, seed=0).batch(3)
    assert x.equal(x_) and y.equal(y_)
    for i in (0, 7, len(SequentialWindows(val, 8)) - 1):
        assert all(a.equal(b) for a, b in zip(SequentialWindows(val, 8)[i], SequentialWindows(np.array(val), 8)[i]))


def test_num_proc_is_checked():
    assert DataConfig(context_length=4, batch_size=2, path="x").num_proc is None  # the cores available
    with pytest.raises(ConfigError, match=r"data.num_proc must be a positive integer or null, got 0"):
        DataConfig(context_length=4, batch_size=2, path="x", num_proc=0)


def test_a_sampled_check_catches_damage_without_reading_every_token(tmp_path, cl100k, monkeypatch):
    text = tmp_path / "a.txt"
    text.write_text(text_of(60_000), encoding="utf-8")  # ~2.2 MB: 2 bytes a token, more than the 1 MiB sampled
    tokens = load_or_build_tokens(open_corpus(text), cl100k, tmp_path / "cache")
    path = Path(tokens.ids.filename)
    size = path.stat().st_size
    assert size > 1 << 20
    read = []

    class Counting(io.FileIO):
        def read(self, n=-1):
            data = super().read(n)
            read.append(len(data))
            return data

    def counting_open(file, mode="r", *args, **kwargs):
        return Counting(file, "r") if Path(file) == path else open(file, mode, *args, **kwargs)

    monkeypatch.setattr("attnlab.data.token_file.open", counting_open, raising=False)
    read_token_file(path)
    assert 0 < sum(read) <= 1 << 20  # at most 16 blocks of 64 KiB
    monkeypatch.undo()
    data = bytearray(path.read_bytes())
    data[-1] ^= 1  # the last block is always sampled
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match="sampled blocks do not match"):
        read_token_file(path)
