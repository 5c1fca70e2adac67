"""``data.path`` of a pairs config: a file of ``(source, target)`` string pairs.

=====================  ===========================================================================
``.tsv``, ``.txt``     one pair a line, ``source<TAB>target`` (exactly one tab; a trailing ``\\r`` is dropped)
``.jsonl``, ``.json``  JSON Lines: one object a line, ``data.source_field`` and ``data.target_field``
``<either>.gz``        the same, gzip-compressed
=====================  ===========================================================================

Blank lines are skipped. The whole file is read and checked before anything is returned, and bad
input is one :class:`DataError` line naming the file, the line and the fix (worded as
:mod:`attnlab.data.formats` words the same faults of text files).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from attnlab.data.formats import (
    GZIP_SUFFIX,
    JSON_LINES_SUFFIXES,
    decode_utf8,
    json_kind,
    line_of,
    open_file,
    read_bytes,
)
from attnlab.errors import DataError

TSV_SUFFIXES = (".tsv", ".txt")
PAIR_SUFFIXES = (*TSV_SUFFIXES, *JSON_LINES_SUFFIXES)
KINDS = f"{', '.join(PAIR_SUFFIXES)} (each also {GZIP_SUFFIX})"

Pair = tuple[str, str]  # (source, target)


def check_pairs_path(path: str | Path) -> str:
    """``path``'s kind of pairs file by its name (its suffix, of :data:`PAIR_SUFFIXES`), without
    reading it; one line if it is missing, a folder or not a pairs file (a run's first-second check)."""
    path = Path(path).expanduser()
    name = path.name.lower().removesuffix(GZIP_SUFFIX)
    suffix = next((s for s in PAIR_SUFFIXES if name.endswith(s)), None)
    if not path.exists():
        raise DataError(f"data.path {str(path)!r} does not exist; point data.path at a file of pairs: {KINDS}")
    if path.is_dir() or suffix is None:
        what = "a folder" if path.is_dir() else "not a file of pairs by its name"
        raise DataError(
            f"data.path {str(path)!r} is {what}; point data.path at one file of pairs: {KINDS} "
            f"(source<TAB>target a line, or JSON Lines with data.source_field and data.target_field)"
        )
    return suffix


def read_pairs(path: str | Path, source_field: str = "source", target_field: str = "target") -> list[Pair]:
    """The pairs of one TSV or JSON Lines file, in file order."""
    suffix = check_pairs_path(path)
    path = Path(path).expanduser()
    text = _file_text(path).removeprefix("\ufeff")  # a byte-order mark, as some editors write
    lines = text.split("\n")  # only \n: a JSON string or a TSV field may hold U+2028 and the like
    if suffix in TSV_SUFFIXES:
        pairs = [_tsv_pair(line.removesuffix("\r"), path, n) for n, line in enumerate(lines, 1) if line.strip()]
    else:
        pairs = [
            _json_pair(line, path, n, source_field, target_field) for n, line in enumerate(lines, 1) if line.strip()
        ]
    if not pairs:
        raise DataError(f"data.path {str(path)!r} holds no pairs (it is empty or blank); add pairs, one a line")
    return pairs


def _file_text(path: Path) -> str:
    """The file's text, decompressed when it is a ``.gz``; a damaged gzip or bytes that are not
    UTF-8 are one line (formats.py's, as for text corpora; the bad byte's line is named)."""
    with open_file(path) as f:
        data = read_bytes(f, -1, path)
    return decode_utf8(data, path, where=line_of(data, 1))


def _checked(source: str, target: str, path: Path, n: int, fix: str) -> Pair:
    for side, value in (("source", source), ("target", target)):
        if not value.strip():
            raise DataError(f"data.path {str(path)!r} line {n} has an empty {side}; {fix}, or remove that line")
    return source, target


def _tsv_pair(line: str, path: Path, n: int) -> Pair:
    tabs = line.count("\t")
    if tabs != 1:
        problem = "no tab" if tabs == 0 else f"{tabs} tabs"
        raise DataError(
            f"data.path {str(path)!r} line {n} has {problem}; write each pair as source<TAB>target with exactly one "
            f"tab (or use .jsonl for text with tabs)"
        )
    source, target = line.split("\t")
    return _checked(source, target, path, n, "write text on both sides of the tab")


def _json_pair(line: str, path: Path, n: int, source_field: str, target_field: str) -> Pair:
    where = f"data.path {str(path)!r} line {n}"
    try:
        record: Any = json.loads(line)
    except json.JSONDecodeError as err:
        raise DataError(
            f"{where} is not JSON ({err.msg} at column {err.colno}); a .jsonl or .json file of pairs holds one JSON "
            f"object a line: fix or remove that line"
        ) from None
    if not isinstance(record, dict):
        raise DataError(
            f"{where} is a JSON {json_kind(record)}, not an object; write one object a line, with the fields "
            f"{source_field!r} and {target_field!r}"
        )
    for key, field in (("data.source_field", source_field), ("data.target_field", target_field)):
        if field not in record:
            fields = ", ".join(list(record)[:10]) + (f" and {len(record) - 10} more" if len(record) > 10 else "")
            has = f"its fields: {fields}" if record else "it is an empty object"
            raise DataError(f"{where} has no field {field!r} ({has}); set {key} to the field that holds it")
        if not isinstance(record[field], str):
            raise DataError(
                f"{where}: field {field!r} is a JSON {json_kind(record[field])} "
                f"({json.dumps(record[field], ensure_ascii=False)[:40]}), not a string; make it a string, or set {key} "
                f"to a field of text"
            )
    return _checked(record[source_field], record[target_field], path, n, "give both fields text")
