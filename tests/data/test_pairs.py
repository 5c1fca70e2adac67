"""data.path of a pairs config (attnlab.data.pairs): TSV and JSON Lines, each also gzipped, and
their bad input: one line naming the file, the line and the fix."""

import gzip
import json

import pytest

from attnlab.data.pairs import read_pairs
from attnlab.errors import DataError

PAIRS = [("3 Mar 2021", "2021-03-03"), ("le chat\u2028noir", "the black cat"), ("Grüße", "greetings")]


def tsv(pairs) -> bytes:
    return "".join(f"{s}\t{t}\n" for s, t in pairs).encode("utf-8")


def jsonl(records) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("a.tsv", tsv(PAIRS)),
        ("a.txt", b"\n" + tsv(PAIRS).replace(b"\n", b"\r\n") + b"\n  \n"),  # CRLF, blank lines skipped
        ("a.TSV.gz", gzip.compress("\ufeff".encode() + tsv(PAIRS))),  # a byte-order mark
        ("a.jsonl", jsonl({"source": s, "target": t, "id": i} for i, (s, t) in enumerate(PAIRS))),
        ("a.json", jsonl({"source": s, "target": t} for s, t in PAIRS) + b"\n"),
        ("a.jsonl.gz", gzip.compress(jsonl({"target": t, "source": s} for s, t in PAIRS))),
    ],
)
def test_each_line_is_one_pair_in_file_order(tmp_path, name, content):
    (tmp_path / name).write_bytes(content)
    assert read_pairs(tmp_path / name) == PAIRS


def test_the_fields_of_a_record_are_named_by_the_config(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl({"de": s, "en": t, "source": "not this"} for s, t in PAIRS))
    assert read_pairs(path, source_field="de", target_field="en") == PAIRS


def test_spaces_inside_a_field_are_kept(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes(b" a b \t c\n")
    assert read_pairs(path) == [(" a b ", " c")]


def one_line_error(path, fields=("source", "target")) -> str:
    with pytest.raises(DataError) as err:
        read_pairs(path, *fields)
    text = str(err.value)
    assert "\n" not in text and str(path) in text
    return text


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"a\tb\nno tab here\nc\td\n", ["line 2 has no tab", "source<TAB>target", "exactly one tab"]),
        (b"a\tb\tc\n", ["line 1 has 2 tabs", "source<TAB>target", ".jsonl"]),
        (b"a\tb\n\n\tb\n", ["line 3 has an empty source", "remove that line"]),
        (b"a\t  \n", ["line 1 has an empty target", "both sides of the tab"]),
    ],
    ids=["no tab", "two tabs", "empty source", "empty target"],
)
def test_a_bad_tsv_line_is_named_with_the_fix(tmp_path, content, expected):
    path = tmp_path / "a.tsv"
    path.write_bytes(content)
    text = one_line_error(path)
    assert all(part in text for part in expected), text


@pytest.mark.parametrize(
    ("lines", "expected"),
    [
        (
            [b'{"source": "a", "target": "b"}', b'{"source": "a", "target": "b"'],
            ["line 2 is not JSON", "fix or remove"],
        ),
        ([b'["a", "b"]'], ["line 1 is a JSON list, not an object", "'source' and 'target'"]),
        ([b'{"src": "a", "tgt": "b"}'], ["line 1 has no field 'source' (its fields: src, tgt)", "data.source_field"]),
        ([b'{"source": "a", "tgt": "b"}'], ["has no field 'target' (its fields: source, tgt)", "data.target_field"]),
        ([b"{}"], ["line 1 has no field 'source' (it is an empty object)"]),
        ([b'{"source": 3, "target": "b"}'], ["line 1: field 'source' is a JSON number (3), not a string"]),
        ([b'{"source": "a", "target": ""}'], ["line 1 has an empty target", "give both fields text"]),
    ],
    ids=["not json", "not an object", "no source", "no target", "empty object", "not a string", "empty target"],
)
def test_a_bad_json_line_is_named_with_the_fix(tmp_path, lines, expected):
    path = tmp_path / "a.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    text = one_line_error(path)
    assert all(part in text for part in expected), text


def test_a_record_with_many_fields_lists_the_first_ten(tmp_path):
    path = tmp_path / "a.jsonl"
    path.write_bytes(jsonl([{f"f{i}": "x" for i in range(14)}]))
    assert "(its fields: f0, f1, f2, f3, f4, f5, f6, f7, f8, f9 and 4 more)" in one_line_error(path)


@pytest.mark.parametrize("name", ["a.tsv", "a.jsonl", "a.tsv.gz"])
@pytest.mark.parametrize("content", [b"", b"\n \n\r\n"], ids=["empty", "blank"])
def test_a_file_without_pairs_is_one_line(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(gzip.compress(content) if name.endswith(".gz") else content)
    assert "holds no pairs" in one_line_error(path)


def test_a_file_that_is_not_utf8_names_the_line(tmp_path):
    path = tmp_path / "a.tsv"
    path.write_bytes(b"a\tb\nc\td\xe9\n")
    assert "is not UTF-8 (byte 0xe9 at offset 7, line 2)" in one_line_error(path)


def test_a_damaged_gzip_is_one_line(tmp_path):
    path = tmp_path / "a.tsv.gz"
    path.write_bytes(gzip.compress(tsv(PAIRS))[:-8])
    assert "truncated" in one_line_error(path)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("missing.tsv", "does not exist"),
        ("pairs.csv", "is not a file of pairs by its name"),
        ("folder", "is a folder"),
    ],
)
def test_a_path_that_is_no_pairs_file_lists_the_kinds(tmp_path, name, expected):
    path = tmp_path / name
    if name == "folder":
        path.mkdir()
    elif name.endswith(".csv"):
        path.write_text("a,b\n", encoding="utf-8")
    text = one_line_error(path)
    assert expected in text and ".tsv, .txt, .jsonl, .json (each also .gz)" in text
