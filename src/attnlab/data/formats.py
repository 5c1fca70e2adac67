"""The file formats of ``data.path``: a file's bytes -> its documents (strings), streamed in pieces.

=====================  ===========================================================================
``.txt``, ``.md``      the file is one document
``.jsonl``, ``.json``  JSON Lines: one object a line, each one document, its text in ``data.text_field``
``.parquet``           each row of the column ``data.text_field`` is one document (needs pyarrow)
``<any of them>.gz``   the same, gzip-compressed
=====================  ===========================================================================

A folder is read for the files with these names; a file that ``data.path`` names itself is read as
plain text when its name is none of these (``input``, ``notes.text``), as it always was.

:func:`read_pieces` streams a file as :class:`Piece` s of about ``chunk_bytes`` each, so memory
stays bounded however large the file: a text file is cut after a newline that a printable ASCII
character follows (where cl100k's pre-tokenizer splits anyway, so the pieces tokenize exactly as
the whole would), failing that after any newline, failing that (a file of one endless line)
between two characters; a JSON Lines file after a line; a Parquet file by row batches. Bad input
is one :class:`DataError` line that names the file and the line, row or byte offset at fault,
counted over the whole (decompressed) file, wherever the piece it falls in begins.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import re
import tempfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

from attnlab.errors import DataError

TEXT_SUFFIXES = (".txt", ".md")
JSON_LINES_SUFFIXES = (".jsonl", ".json")
PARQUET_SUFFIX = ".parquet"
SUFFIXES = (*TEXT_SUFFIXES, *JSON_LINES_SUFFIXES, PARQUET_SUFFIX)
GZIP_SUFFIX = ".gz"
CHUNK_BYTES = 1 << 21  # 2 MiB: a piece's size, what a tokenizer worker gets at a time

ONE_OBJECT_A_LINE = "a .jsonl or .json file holds one JSON object a line (JSON Lines)"


class Piece(NamedTuple):
    """Text of one document, all of it or a part; ``starts`` where it is a document's beginning."""

    text: str
    starts: bool


def format_suffix(path: Path) -> str | None:
    """The format of a file by its name (``.jsonl`` for ``a.jsonl.gz``), None when it has none of :data:`SUFFIXES`."""
    name = path.name.lower().removesuffix(GZIP_SUFFIX)
    return next((suffix for suffix in SUFFIXES if name.endswith(suffix)), None)


def require_readers(files: list[Path]) -> None:
    """Fail before any reading when a file needs a library that is not installed (pyarrow for Parquet)."""
    parquet = next((f for f in files if format_suffix(f) == PARQUET_SUFFIX), None)
    if parquet is not None and importlib.util.find_spec("pyarrow") is None:
        raise _no_pyarrow(parquet)


def read_pieces(path: Path, text_field: str, chunk_bytes: int = CHUNK_BYTES) -> Iterator[Piece]:
    """The documents of one file, in pieces of about ``chunk_bytes``: the file itself, or its
    records (``.jsonl``/``.json``, ``.parquet``), each record one piece."""
    suffix = format_suffix(path)
    if suffix == PARQUET_SUFFIX:
        yield from _parquet_pieces(path, text_field, chunk_bytes)
    elif suffix in JSON_LINES_SUFFIXES:
        yield from _json_lines_pieces(path, text_field, chunk_bytes)
    else:
        for offset, block in _blocks(path, chunk_bytes, _text_cut):
            yield Piece(decode_utf8(block, path, offset), starts=offset == 0)


def read_documents(path: Path, text_field: str) -> list[str]:
    """The documents of one file, whole (for a text a tool reads at once; training streams :func:`read_pieces`)."""
    documents: list[list[str]] = []
    for piece in read_pieces(path, text_field):
        if piece.starts:
            documents.append([])
        documents[-1].append(piece.text)
    return ["".join(parts) for parts in documents]


# --------------------------------------------------------------------------------------------
# Bytes and text
# --------------------------------------------------------------------------------------------


def _is_gzip(path: Path) -> bool:
    return path.name.lower().endswith(GZIP_SUFFIX)


def open_file(path: Path) -> BinaryIO:
    """The file's bytes, decompressed as they are read when it is a ``.gz``."""
    return gzip.open(path, "rb") if _is_gzip(path) else open(path, "rb")  # noqa: SIM115 - closed by the caller


def read_bytes(f: BinaryIO, n: int, path: Path) -> bytes:
    """Up to ``n`` (decompressed) bytes; a truncated or damaged ``.gz`` is one line."""
    try:
        return f.read(n)
    except EOFError:
        raise DataError(
            f"{str(path)!r} is truncated (its gzip stream ends before the end marker, at {path.stat().st_size:,} "
            f"bytes); copy or compress it again (`gzip -t` checks a file)"
        ) from None
    except (gzip.BadGzipFile, zlib.error) as err:
        raise DataError(
            f"{str(path)!r} is a damaged gzip file ({err}); copy or compress it again (`gzip -t` checks a file)"
        ) from None


NEWLINE = b"\n"
_SAFE_CUT = re.compile(rb"\n(?=[!-~])")  # a newline, then printable ASCII: cl100k splits there too


def _text_cut(buf: bytes, final: bool) -> int:
    """Where to cut a text's bytes (0: nowhere yet): after the last newline before printable
    ASCII; in a buffer 4x the chunk size without one, after the last newline, else between two
    characters (before the last byte that does not continue a UTF-8 character)."""
    for window in (buf[-(1 << 16) :], buf):  # a safe cut is near the end in any real text
        last = None
        for last in _SAFE_CUT.finditer(window):  # noqa: B007 - the last one
            pass
        if last is not None:
            return len(buf) - len(window) + last.end()
    if not final:
        return 0
    newline = buf.rfind(b"\n")
    if newline >= 0:
        return newline + 1
    end = len(buf) - 1
    while end > 0 and buf[end] & 0xC0 == 0x80:
        end -= 1
    return end


def _line_cut(buf: bytes, final: bool) -> int:
    return buf.rfind(b"\n") + 1  # a record is never cut: a line longer than the buffer waits for its end


def _blocks(path: Path, chunk_bytes: int, cut: Callable[[bytes, bool], int]) -> Iterator[tuple[int, bytes]]:
    """``(offset, bytes)``: the (decompressed) file in consecutive blocks of about ``chunk_bytes``,
    each ending where ``cut`` says; ``offset`` is where the block starts in the whole file."""
    offset, carry = 0, b""
    with open_file(path) as f:
        while True:
            data = read_bytes(f, max(chunk_bytes, len(carry)), path)  # a long line: reads double, not n^2
            if not data:
                if carry or offset == 0:
                    yield offset, carry  # the rest; an empty file is one empty block
                return
            buf = carry + data
            end = cut(buf, len(buf) >= 4 * chunk_bytes)
            if end <= 0:
                carry = buf
                continue
            yield offset, buf[:end]
            offset, carry = offset + end, buf[end:]


def decode_utf8(data: bytes, path: Path, offset: int = 0, where: Callable[[int], str] = lambda offset: "") -> str:
    """UTF-8 only, refused rather than guessed. ``offset``: where ``data`` starts in the file;
    ``where(offset)`` places the bad byte further (`` of row index 7, column 'text'``, ``, line 3``)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        unzipped = " once decompressed" if _is_gzip(path) else ""
        raise DataError(
            f"{str(path)!r} is not UTF-8 (byte 0x{data[err.start]:02x} at offset {offset + err.start}"
            f"{where(err.start)}{unzipped}); convert it, e.g. `iconv -f <its encoding> -t UTF-8`"
        ) from None


# --------------------------------------------------------------------------------------------
# JSON Lines
# --------------------------------------------------------------------------------------------


def _json_lines_pieces(path: Path, text_field: str, chunk_bytes: int) -> Iterator[Piece]:
    """One piece per line's object (blank lines skipped); lines are split on ``\\n`` only, since
    JSON strings may hold U+2028 and other characters that ``str.splitlines`` would split on."""
    first = 1  # the number of the block's first line
    for offset, block in _blocks(path, chunk_bytes, _line_cut):
        text = decode_utf8(block, path, offset, where=line_of(block, first))
        if offset == 0:
            text = text.removeprefix("\ufeff")  # a byte-order mark, as some editors write
        for n, line in enumerate(text.split("\n"), first):  # n: the line number, from 1
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(
                    f"data.path {str(path)!r} line {n} is not JSON ({err.msg} at column {err.colno}); "
                    f"{ONE_OBJECT_A_LINE}: fix or remove that line"
                ) from None
            yield Piece(_record_text(record, path, n, text_field), starts=True)
        first += block.count(b"\n")


def line_of(block: bytes, first: int) -> Callable[[int], str]:
    """``, line N`` of the byte at an offset in ``block``, whose first line is number ``first``."""
    return lambda at: f", line {first + block.count(NEWLINE, 0, at)}"


def _record_text(record: Any, path: Path, n: int, text_field: str) -> str:
    where = f"data.path {str(path)!r} line {n}"
    if not isinstance(record, dict):
        raise DataError(
            f"{where} is a JSON {json_kind(record)}, not an object; {ONE_OBJECT_A_LINE}, its text in "
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
            f"{where}: field {text_field!r} is a JSON {json_kind(value)} ({_short_json(value)}), not a string; "
            f"make every record's {text_field!r} a string, or set data.text_field to a field that holds text"
        )
    return value


def json_kind(value: Any) -> str:
    """What a JSON value is, in an error line: object, list, string, boolean, null or number."""
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


def _parquet_pieces(path: Path, text_field: str, chunk_bytes: int) -> Iterator[Piece]:
    """The column ``text_field``, each row a document; only that column is read, a batch of rows at
    a time (a ``.parquet.gz`` is decompressed to a temporary file first: Parquet is read from its end)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise _no_pyarrow(path) from None
    with tempfile.TemporaryFile() as unzipped:
        if _is_gzip(path):
            with open_file(path) as f:
                while data := read_bytes(f, chunk_bytes, path):
                    unzipped.write(data)
            unzipped.seek(0)
        try:
            parquet = pq.ParquetFile(unzipped if _is_gzip(path) else str(path))
            _check_column(parquet.schema_arrow, path, text_field)
            row = 0  # the batch's first row index
            for batch in parquet.iter_batches(batch_size=max(1, chunk_bytes >> 12), columns=[text_field]):
                column = batch.column(0)
                if pa.types.is_dictionary(column.type):
                    column = column.cast(column.type.value_type)
                # (rows,) bytes, decoded here: a writer other than pyarrow need not have checked the UTF-8
                for value in column.cast(pa.large_binary()).to_pylist():
                    yield Piece(_row_text(value, path, row, text_field), starts=True)
                    row += 1
        except (pa.ArrowException, OSError) as err:
            raise DataError(
                f"{str(path)!r} is not a readable Parquet file ({_first_line(err)}); copy or write it again"
            ) from None


def _check_column(schema: Any, path: Path, text_field: str) -> None:
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


def _row_text(value: bytes | None, path: Path, row: int, text_field: str) -> str:
    if value is None:
        raise DataError(
            f"data.path {str(path)!r}: row index {row} of column {text_field!r} is null; fill or drop the rows "
            f"without text"
        )
    return decode_utf8(value, path, where=lambda at: f" of row index {row}, column {text_field!r}")


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [type(err).__name__])[0]


def _is_text_type(kind: Any) -> bool:
    """Strings or bytes (decoded as UTF-8), also dictionary-encoded."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    names = ("is_string", "is_large_string", "is_string_view", "is_binary", "is_large_binary", "is_binary_view")
    return any(getattr(pa.types, name, lambda _: False)(kind) for name in names)
