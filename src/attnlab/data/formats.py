"""The file formats of ``data.path``: a file's bytes -> its documents (strings).

=====================  ===========================================================================
``.txt``, ``.md``      the file is one document
``.jsonl``, ``.json``  JSON Lines: one object a line, each one document, its text in ``data.text_field``
``.parquet``           each row of the column ``data.text_field`` is one document (needs pyarrow)
``<any of them>.gz``   the same, gzip-compressed
=====================  ===========================================================================

A folder is read for the files with these names; a file that ``data.path`` names itself is read as
plain text when its name is none of these (``input``, ``notes.text``), as it always was. Every
reader reads and checks a whole file before it returns, so bad input stops the run before
anything is tokenized or cached, with one :class:`DataError` line that names the file and the
line, row or byte offset at fault.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import zlib
from pathlib import Path
from typing import Any

from attnlab.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")
JSON_LINES_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIX = ".parquet"
SUFFIXES = (*TEXT_SUFFIXES, *JSON_LINES_SUFFIXES, PARQUET_SUFFIX)
GZIP_SUFFIX = ".gz"

ONE_OBJECT_A_LINE = "a .jsonl or .json file holds one JSON object a line (JSON Lines)"


def format_suffix(path: Path) -> str | None:
    """The format of a file by its name (``.jsonl`` for ``a.jsonl.gz``), None when it has none of :data:`SUFFIXES`."""
    name = path.name.lower().removesuffix(GZIP_SUFFIX)
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def require_readers(files: list[Path]) -> None:
    """Fail before any reading when a file needs a library that is not installed (pyarrow for Parquet)."""
    parquet = next((f for f in files if format_suffix(f) == PARQUET_SUFFIX), None)
    if parquet is not None and importlib.util.find_spec("pyarrow") is None:
        raise _no_pyarrow(parquet)


def read_documents(path: Path, text_field: str) -> list[str]:
    """The documents of one file: the file itself, or its records (``.jsonl``/``.json``, ``.parquet``)."""
    suffix = format_suffix(path)
    if suffix == PARQUET_SUFFIX:
        return _parquet_documents(path, text_field)
    data = _file_bytes(path)
    if suffix in JSON_LINES_SUFFIXES:
        return _json_lines_documents(data, path, text_field)
    return [_decode(data, path)]


# --------------------------------------------------------------------------------------------
# Bytes and text
# --------------------------------------------------------------------------------------------


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(GZIP_SUFFIX)


def _file_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed when it is a ``.gz``; a truncated or damaged one is one line."""
    data = path.read_bytes()
    if not _is_gzip(path):
        return data
    try:
        return gzip.decompress(data)
    except EOFError:
        raise DataError(
            f"{str(path)!r} is truncated (its gzip stream ends before the end marker, at {len(data):,} bytes); "
            f"copy or compress it again (`gzip -t` checks a file)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(
            f"{str(path)!r} is a damaged gzip file ({err}); copy or compress it again (`gzip -t` checks a file)"
        ) from None


def _decode(data: bytes, path: Path, where: str = "") -> str:
    """UTF-8 only, refused rather than guessed; ``where`` places the offset (`` of row index 7, column 'text'``)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _not_utf8(data, path, err.start, where) from None


def _not_utf8(data: bytes, path: Path, offset: int, where: str = "") -> DataError:
    unzipped = " once decompressed" if _is_gzip(path) else ""
    return DataError(
        f"{str(path)!r} is not UTF-8 (byte 0x{data[offset]:02x} at offset {offset}{where}{unzipped}); "
        f"convert it, e.g. `iconv -f <its encoding> -t UTF-8`"
    )


# --------------------------------------------------------------------------------------------
# JSON Lines
# --------------------------------------------------------------------------------------------


def _json_lines_documents(data: bytes, path: Path, text_field: str) -> list[str]:
    """One document per line's object (blank lines skipped); lines are split on ``\\n`` only, since
    JSON strings may hold U+2028 and other characters that ``str.splitlines`` would split on."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:  # name the line too: a large file is fixed line by line
        line = data.count(b"\n", 0, err.start) + 1
        raise _not_utf8(data, path, err.start, where=f", line {line}") from None
    text = text.removeprefix("\ufeff")  # a byte-order mark, as some editors write
    documents = []
    for n, line in enumerate(text.split("\n"), 1):  # n: the line number, from 1
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(
                f"data.path {str(path)!r} line {n} is not JSON ({err.msg} at column {err.colno}); "
                f"{ONE_OBJECT_A_LINE}: fix or remove that line"
            ) from None
        documents.append(_record_text(record, path, n, text_field))
    return documents


def _record_text(record: Any, path: Path, n: int, text_field: str) -> str:
    where = f"data.path {str(path)!r} line {n}"
    if not isinstance(record, dict):
        raise DataError(
            f"{where} is a JSON {_json_kind(record)}, not an object; {ONE_OBJECT_A_LINE}, its text in "
            f"data.text_field ({text_field!r})"
        )
    if text_field not in record:
        if not record:
            raise DataError(f"{where} is an empty object, without the field {text_field!r}; fix or remove that line")
        fields = list(record)
        shown = ", ".join(fields[:10]) + (f" and {len(fields) - 10} more" if len(fields) > 10 else "")
        text_like = next((k for k, v in record.items() if isinstance(v, str)), fields[0])
        raise DataError(
            f"{where} has no field {text_field!r} (its fields: {shown}); set data.text_field to the one that holds "
            f"the text, e.g. data.text_field={text_like}"
        )
    value = record[text_field]
    if not isinstance(value, str):
        raise DataError(
            f"{where}: field {text_field!r} is a JSON {_json_kind(value)} ({_short_json(value)}), not a string; "
            f"make every record's {text_field!r} a string, or set data.text_field to a field that holds text"
        )
    return value


def _json_kind(value: Any) -> str:
    kinds = {dict: "object", list: "list", str: "string", bool: "boolean", type(None): "null"}
    return kinds.get(type(value), "number")


def _short_json(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "…"


# --------------------------------------------------------------------------------------------
# Parquet
# --------------------------------------------------------------------------------------------


def _no_pyarrow(path: Path) -> DataError:
    return DataError(
        f"{str(path)!r} is a Parquet file, and reading one needs pyarrow, which is not installed; "
        f"pip install pyarrow (or convert the file to .jsonl)"
    )


def _parquet_documents(path: Path, text_field: str) -> list[str]:
    """The column ``text_field``, each row a document; only that column is read."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _no_pyarrow(path) from None
    source = pa.BufferReader(_file_bytes(path)) if _is_gzip(path) else str(path)
    try:
        parquet = pq.ParquetFile(source)
        schema = parquet.schema_arrow
        if text_field not in schema.names:
            text_like = [f.name for f in schema if _is_text_type(f.type)] or schema.names
            raise DataError(
                f"data.path {str(path)!r} has no column {text_field!r} (its columns: {', '.join(schema.names)}); "
                f"set data.text_field to the one that holds the text, e.g. data.text_field={text_like[0]}"
            )
        kind = schema.field(text_field).type
        if not _is_text_type(kind):
            raise DataError(
                f"data.path {str(path)!r}: column {text_field!r} holds {kind}, not text; set data.text_field to a "
                f"column of strings"
            )
        column = parquet.read(columns=[text_field]).column(text_field)
    except (pa.ArrowException, OSError) as err:
        raise DataError(
            f"{str(path)!r} is not a readable Parquet file ({_first_line(err)}); copy or write it again"
        ) from None
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    # (rows,) bytes, decoded here: a writer other than pyarrow need not have checked the UTF-8
    values = column.cast(pa.large_binary()).to_pylist()
    documents = []
    for row, value in enumerate(values):
        if value is None:
            raise DataError(
                f"data.path {str(path)!r}: row index {row} of column {text_field!r} is null; fill or drop the rows "
                f"without text"
            )
        documents.append(_decode(value, path, where=f" of row index {row}, column {text_field!r}"))
    return documents


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _is_text_type(kind: Any) -> bool:
    """Strings or bytes (decoded as UTF-8), also dictionary-encoded."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    names = ("is_string", "is_large_string", "is_string_view", "is_binary", "is_large_binary", "is_binary_view")
    return any(getattr(pa.types, name, lambda _: False)(kind) for name in names)
