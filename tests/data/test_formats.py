"""data.path's formats (.txt, .md, JSON Lines, Parquet, each also gzipped) and their bad input:
one line naming the file (and line, row or byte) and the fix, before anything is tokenized or cached."""

import gzip
import json
import sys

import pytest

from attnlab.data.corpus import TEXT_JOINER, check_text_path, read_corpus
from attnlab.data.datamodule import DataConfig, TextDataModule
from attnlab.errors import ConfigError, DataError

DOCS = ["To be, or not to be", "that is the question:\nWhether 'tis nobler"]


def jsonl(records) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in records).encode("utf-8")


def write_parquet(path, columns):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table(columns), path)
    return path


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.jsonl", jsonl({"text": d, "id": i} for i, d in enumerate(DOCS))),
        ("a.json", jsonl({"text": d} for d in DOCS)),
        ("a.jsonl.gz", gzip.compress(jsonl({"text": d} for d in DOCS))),
        ("a.JSONL", b"\n" + jsonl({"text": d} for d in DOCS) + b"\n\n"),  # blank lines skipped
    ],
)
def test_each_record_of_a_json_lines_file_is_a_document(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    corpus = read_corpus(tmp_path / name)
    assert corpus.documents == DOCS
    assert corpus.text == TEXT_JOINER.join(DOCS)


def test_a_json_string_may_hold_line_separators_and_a_file_may_start_with_a_bom(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes("\ufeff".encode() + json.dumps({"text": "a\u2028b\x85c"}, ensure_ascii=False).encode() + b"\r\n")
    assert read_corpus(path).documents == ["a\u2028b\x85c"]


def test_text_field_names_the_field(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl({"body": d, "text": "not this"} for d in DOCS))
    assert read_corpus(path, text_field="body").documents == DOCS


@pytest.mark.parametrize("name", ["a.txt.gz", "a.md.gz", "input.gz"])
def test_gzipped_text_is_one_document(tmp_path, name):
    (tmp_path / name).write_bytes(gzip.compress(DOCS[1].encode()))
    assert read_corpus(tmp_path / name).documents == [DOCS[1]]


def test_a_file_named_directly_with_another_suffix_is_plain_text(tmp_path):
    (tmp_path / "input").write_text(DOCS[0], encoding="utf-8")
    assert read_corpus(tmp_path / "input").documents == [DOCS[0]]


def test_a_folder_mixes_formats_in_sorted_relative_path_order(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.txt").write_text("one", encoding="utf-8")
    (tmp_path / "b" / "c.jsonl.gz").write_bytes(gzip.compress(jsonl([{"text": "three"}, {"text": "four"}])))
    (tmp_path / "b" / "a.md").write_text("two", encoding="utf-8")
    (tmp_path / "c.json").write_bytes(jsonl([{"text": "five"}]))
    (tmp_path / "notes.csv").write_text("not read", encoding="utf-8")
    (tmp_path / "d.txt").mkdir()  # a folder with a text file's name is a folder
    assert [p.relative_to(tmp_path).as_posix() for p in check_text_path(tmp_path)] == [
        "a.txt",
        "b/a.md",
        "b/c.jsonl.gz",
        "c.json",
    ]
    assert read_corpus(tmp_path).documents == ["one", "two", "three", "four", "five"]


def test_checking_the_path_reads_no_contents(tmp_path, monkeypatch):
    from pathlib import Path

    (tmp_path / "a.txt").write_text("one", encoding="utf-8")
    (tmp_path / "b.jsonl.gz").write_bytes(b"not even gzip")
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail(f"read {self}"))
    monkeypatch.setattr(Path, "open", lambda self, *a, **k: pytest.fail(f"opened {self}"))
    assert len(check_text_path(tmp_path)) == 2


def test_a_parquet_column_is_one_document_a_row(tmp_path):
    pa = pytest.importorskip("pyarrow")
    write_parquet(tmp_path / "a.parquet", {"id": [0, 1], "text": DOCS})
    assert read_corpus(tmp_path / "a.parquet").documents == DOCS
    (tmp_path / "b.parquet.gz").write_bytes(gzip.compress((tmp_path / "a.parquet").read_bytes()))
    assert read_corpus(tmp_path / "b.parquet.gz").documents == DOCS
    categories = pa.array(DOCS).dictionary_encode()  # as pandas writes a categorical column
    write_parquet(tmp_path / "c.parquet", {"body": categories, "raw": pa.array([d.encode() for d in DOCS])})
    assert read_corpus(tmp_path / "c.parquet", text_field="body").documents == DOCS
    assert read_corpus(tmp_path / "c.parquet", text_field="raw").documents == DOCS  # bytes, as UTF-8


# --------------------------------------------------------------------------------------------
# Bad input: one line each
# --------------------------------------------------------------------------------------------


def error_of(path, text_field="text") -> str:
    with pytest.raises(DataError) as raised:
        read_corpus(path, text_field)
    text = str(raised.value)
    assert "\n" not in text
    return text


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl({"text": f"record {i}"} for i in range(16)) + b'{"text": "seventeen"\n')
    assert error_of(path) == (
        f"data.path '{path}' line 17 is not JSON (Expecting ',' delimiter at column 21); a .jsonl or .json file "
        "holds one JSON object a line (JSON Lines): fix or remove that line"
    )


def test_a_pretty_printed_json_array_is_not_json_lines(tmp_path):
    path = tmp_path / "a.json"
    path.write_text(json.dumps([{"text": "a"}], indent=2), encoding="utf-8")
    assert error_of(path).startswith(f"data.path '{path}' line 1 is not JSON (Expecting value at column 2); ")
    path.write_text(json.dumps([{"text": "a"}]), encoding="utf-8")
    assert error_of(path).startswith(f"data.path '{path}' line 1 is a JSON list, not an object; a .jsonl or .json ")


def test_a_record_without_the_field_lists_its_fields_and_the_fix(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl([{"text": "a"}, {"id": 7, "body": "b", "title": "t"}]))
    assert error_of(path) == (
        f"data.path '{path}' line 2 has no field 'text' (its fields: id, body, title); set data.text_field to the "
        "one that holds the text, e.g. data.text_field=body"
    )
    path.write_bytes(jsonl([{}]))
    assert (
        error_of(path)
        == f"data.path '{path}' line 1 is an empty object, without the field 'text'; fix or remove that line"
    )


@pytest.mark.parametrize(
    ("value", "kind"), [(42, "number (42)"), (None, "null (null)"), (["a", "b"], 'list (["a", "b"])')]
)
def test_a_field_that_is_not_a_string_is_named(tmp_path, value, kind):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl([{"text": "a"}, {"text": "b"}, {"text": value}]))
    assert error_of(path) == (
        f"data.path '{path}' line 3: field 'text' is a JSON {kind}, not a string; make every record's 'text' a "
        "string, or set data.text_field to a field that holds text"
    )


def test_a_truncated_or_damaged_gzip_is_named(tmp_path):
    whole = gzip.compress(jsonl({"text": f"record {i}"} for i in range(1000)))
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(whole[: len(whole) // 2])
    assert error_of(path) == (
        f"'{path}' is truncated (its gzip stream ends before the end marker, at {len(whole) // 2:,} bytes); "
        "copy or compress it again (`gzip -t` checks a file)"
    )
    path.write_bytes(b"PK\x03\x04 a zip, not a gzip")
    assert error_of(path).startswith(f"'{path}' is a damaged gzip file (Not a gzipped file (b'PK')); copy or compress")
    path.write_bytes(whole[:-8] + bytes(8))  # the CRC and length trailer zeroed
    assert error_of(path).startswith(f"'{path}' is a damaged gzip file (CRC check failed")


def test_a_parquet_file_without_the_column_lists_its_columns(tmp_path):
    path = write_parquet(tmp_path / "a.parquet", {"id": [1, 2], "body": DOCS})
    assert error_of(path) == (
        f"data.path '{path}' has no column 'text' (its columns: id, body); set data.text_field to the one that "
        "holds the text, e.g. data.text_field=body"
    )
    assert error_of(path, "id") == (
        f"data.path '{path}': column 'id' holds int64, not text; set data.text_field to a column of strings"
    )
    write_parquet(path, {"text": [DOCS[0], None]})
    assert error_of(path).startswith(f"data.path '{path}': row index 1 of column 'text' is null; fill or drop the rows")
    path.write_bytes(b"PAR1 not really")
    assert error_of(path).startswith(f"'{path}' is not a readable Parquet file (")


def test_parquet_without_pyarrow_says_to_install_it_before_reading_anything(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("one", encoding="utf-8")
    (tmp_path / "b.parquet").write_bytes(b"PAR1")
    monkeypatch.setitem(sys.modules, "pyarrow", None)  # `import pyarrow` fails, find_spec finds none
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    line = (
        f"'{tmp_path / 'b.parquet'}' is a Parquet file, and reading one needs pyarrow, which is not installed; "
        "pip install pyarrow (or convert the file to .jsonl)"
    )
    with pytest.raises(DataError) as raised:
        check_text_path(tmp_path)  # the first-second check
    assert str(raised.value) == line
    assert error_of(tmp_path) == line


def non_utf8_cases():
    bad = "Ophélie".encode("latin-1")  # 0xe9 at offset 3
    return [
        ("x.txt", b"abc " + bad, "(byte 0xe9 at offset 7)"),
        ("x.md", bad, "(byte 0xe9 at offset 3)"),
        ("x.txt.gz", gzip.compress(b"ab" + bad), "(byte 0xe9 at offset 5 once decompressed)"),
        ("x.jsonl", b'{"text": "a"}\n{"text": "' + bad + b'"}\n', "(byte 0xe9 at offset 27, line 2)"),
        (
            "x.jsonl.gz",
            gzip.compress(b'{"text": "' + bad + b'"}\n'),
            "(byte 0xe9 at offset 13, line 1 once decompressed)",
        ),
    ]


@pytest.mark.parametrize(("name", "content", "where"), non_utf8_cases(), ids=[c[0] for c in non_utf8_cases()])
def test_a_non_utf8_file_in_a_large_folder_is_named_with_its_byte_offset(tmp_path, name, content, where):
    for i in range(300):
        (tmp_path / f"{i % 10}" / f"{i:03}.txt").parent.mkdir(exist_ok=True)
        (tmp_path / f"{i % 10}" / f"{i:03}.txt").write_text(f"document {i}", encoding="utf-8")
    bad = tmp_path / "7" / name
    bad.write_bytes(content)
    assert error_of(tmp_path) == (f"'{bad}' is not UTF-8 {where}; convert it, e.g. `iconv -f <its encoding> -t UTF-8`")


def test_a_non_utf8_parquet_row_is_named_with_its_byte_offset(tmp_path):
    pa = pytest.importorskip("pyarrow")
    path = write_parquet(tmp_path / "a.parquet", {"text": pa.array([b"fine", "Ophélie".encode("latin-1")])})
    assert error_of(path) == (
        f"'{path}' is not UTF-8 (byte 0xe9 at offset 3 of row index 1, column 'text'); convert it, e.g. "
        "`iconv -f <its encoding> -t UTF-8`"
    )


def test_a_folder_without_supported_files_lists_the_suffixes(tmp_path):
    (tmp_path / "notes.csv").write_text("a,b", encoding="utf-8")
    (tmp_path / "book.pdf").write_bytes(b"%PDF")
    with pytest.raises(DataError) as raised:
        check_text_path(tmp_path)
    assert str(raised.value) == (
        f"folder '{tmp_path}' has no .txt, .md, .jsonl, .json or .parquet files (each also .gz); add some or "
        "point data.path at a text file"
    )


def test_bad_input_stops_setup_before_anything_is_cached(tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.txt").write_text("fine text " * 50, encoding="utf-8")
    (tmp_path / "in" / "b.jsonl").write_bytes(jsonl([{"text": "a"}]) + b"oops\n")
    dm = TextDataModule(
        context_length=4, batch_size=2, path=str(tmp_path / "in"), cache_dir=str(tmp_path / "cache"), val_fraction=0.3
    )
    with pytest.raises(DataError, match="line 2 is not JSON"):
        dm.setup("fit")
    assert not (tmp_path / "cache").exists()


def test_the_data_config_checks_text_field():
    assert DataConfig(context_length=4, batch_size=2, path="x").text_field == "text"
    for bad in ("", 3, None):
        with pytest.raises(ConfigError) as raised:
            DataConfig(context_length=4, batch_size=2, path="x", text_field=bad)
        assert str(raised.value) == f"data.text_field must name the field that holds the text (e.g. text), got {bad!r}"


def test_a_jsonl_corpus_trains_through_the_datamodule(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl({"body": f"passage {i}: " + DOCS[i % 2]} for i in range(40)))
    dm = TextDataModule(
        context_length=8,
        batch_size=2,
        path=str(path),
        text_field="body",
        cache_dir=str(tmp_path / "cache"),
        tokenizer={"kind": "char"},
    )
    dm.setup("fit")
    text = "<|endoftext|>".join(f"passage {i}: " + DOCS[i % 2] for i in range(40))  # the records, one token between
    assert dm.tokenizer.decode(list(dm.train_ids) + list(dm.val_ids)) == text
    assert (dm.train_ids == dm.tokenizer.eot_id).sum() + (dm.val_ids == dm.tokenizer.eot_id).sum() == 39
    assert dm.name == "a"
