"""A Hugging Face dataset as a corpus: ``data.hf_dataset=<name or local path>``, ``data.hf_split``,
each row's ``data.text_field`` one document. Needs the ``datasets`` library (``pip install attnlab[hf]``).

A local path is a folder ``Dataset.save_to_disk`` wrote (``datasets.load_from_disk``; a saved
``DatasetDict`` gives its ``data.hf_split``); anything else is a dataset of the Hub
(``datasets.load_dataset(name, split=...)``, downloaded once into Hugging Face's cache). Either
way the rows live in Arrow files on disk that ``datasets`` memory-maps: the manifest that keys the
token cache is those files' paths, sizes and mtimes, so a start with a cached corpus reads none of
the text, and the rows stream by in batches when it is built.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from attnlab.data.formats import CHUNK_BYTES, Piece
from attnlab.errors import DataError

NEEDS = "pip install attnlab[hf] (or save the text as .jsonl or .parquet and use data.path)"


@dataclass(frozen=True)
class HFCorpus:
    """The rows of a loaded ``datasets.Dataset``, its text in ``text_field``."""

    label: str  # data.hf_dataset as given: in the cache key and the logs
    split: str
    text_field: str
    dataset: Any  # datasets.Dataset

    @property
    def name(self) -> str:
        return Path(self.label).name

    def manifest(self) -> list[tuple[str, int, int]]:
        """``(path, size, mtime_ns)`` of the Arrow files that hold the rows (``stat`` only)."""
        files = sorted({Path(f["filename"]) for f in self.dataset.cache_files})
        return [(str(f.absolute()), f.stat().st_size, f.stat().st_mtime_ns) for f in files]

    def key(self) -> dict[str, Any]:
        return {"hf_dataset": self.label, "split": self.split, "text_field": self.text_field, "files": self.manifest()}

    def size(self) -> int:
        return sum(size for _, size, _ in self.manifest())

    def pieces(self, chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[None, Piece]]:
        """Every row's text, a batch of rows at a time; each row a document."""
        row = 0
        for batch in self.dataset.select_columns([self.text_field]).iter(batch_size=max(1, chunk_bytes >> 12)):
            for text in batch[self.text_field]:
                if text is None:
                    raise DataError(
                        f"data.hf_dataset={self.label}: row index {row} of column {self.text_field!r} is null; "
                        "fill or drop the rows without text"
                    )
                yield None, Piece(text, starts=True)
                row += 1


def open_hf_corpus(label: str, split: str, text_field: str) -> HFCorpus:
    """The dataset ``label`` (a folder of ``save_to_disk``, else a Hub name), its split ``split``, checked for ``text_field``."""
    try:
        import datasets
    except ImportError:
        raise DataError(
            f"data.hf_dataset={label} needs the datasets library, which is not installed; {NEEDS}"
        ) from None
    path = Path(label).expanduser()
    try:
        if path.exists():
            dataset = datasets.load_from_disk(str(path))
        else:
            dataset = datasets.load_dataset(label, split=split)
    except Exception as err:  # not a saved dataset, no such dataset on the Hub, no network
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise DataError(
            f"cannot load data.hf_dataset={label} ({type(err).__name__}: {first}); give a folder written by "
            "Dataset.save_to_disk or the name of a dataset on the Hugging Face Hub"
        ) from None
    if isinstance(dataset, datasets.DatasetDict):
        if split not in dataset:
            raise DataError(
                f"data.hf_dataset={label} has no split {split!r} (its splits: {', '.join(dataset)}); set data.hf_split"
            )
        dataset = dataset[split]
    columns = dataset.column_names
    if text_field not in columns:
        text_like = [c for c in columns if _is_text(dataset.features[c])] or columns
        raise DataError(
            f"data.hf_dataset={label} has no column {text_field!r} (its columns: {', '.join(columns)}); set "
            f"data.text_field to the one that holds the text, e.g. data.text_field={text_like[0]}"
        )
    feature = dataset.features[text_field]
    if not _is_text(feature):
        raise DataError(
            f"data.hf_dataset={label}: column {text_field!r} holds {getattr(feature, 'dtype', feature)}, not text; "
            "set data.text_field to a column of strings"
        )
    return HFCorpus(label=label, split=split, text_field=text_field, dataset=dataset)


def _is_text(feature: Any) -> bool:
    return getattr(feature, "dtype", None) in ("string", "large_string")
