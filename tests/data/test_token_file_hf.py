"""data.hf_dataset: a Hugging Face dataset (here one saved with save_to_disk) as the corpus, each
row a document, streamed into the same token cache, keyed by its Arrow files."""

import sys

import numpy as np
import pytest

import attnlab.data.token_cache as cache_mod
from attnlab.data.datamodule import DataConfig, TextDataModule
from attnlab.data.hf_datasets import open_hf_corpus
from attnlab.errors import ConfigError, DataError

ROWS = [f"row {i}: to be, or not to be" for i in range(30)]


@pytest.fixture(scope="module")
def datasets():
    return pytest.importorskip("datasets")  # the optional extra attnlab[hf]


@pytest.fixture
def saved(tmp_path, datasets):
    path = tmp_path / "saved"
    datasets.Dataset.from_dict({"id": list(range(30)), "body": ROWS}).save_to_disk(str(path))
    return path


def datamodule(tmp_path, saved, **data):
    return TextDataModule(
        hf_dataset=str(saved),
        text_field="body",
        tokenizer={"kind": "char"},
        cache_dir=str(tmp_path / "cache"),
        context_length=8,
        batch_size=2,
        **data,
    )


def test_a_saved_dataset_trains_through_the_datamodule_each_row_a_document(tmp_path, saved, monkeypatch):
    dm = datamodule(tmp_path, saved)
    dm.setup("fit")
    ids = np.concatenate([dm.train_ids, dm.val_ids])
    assert dm.tokenizer.decode(ids) == "<|endoftext|>".join(ROWS) and dm.name == "saved"
    assert int((ids == dm.tokenizer.eot_id).sum()) == len(ROWS) - 1
    monkeypatch.setattr(cache_mod, "build_tokens", lambda *a: pytest.fail("tokenized again"))
    again = datamodule(tmp_path, saved)
    again.setup("fit")  # found by the manifest of its Arrow files
    np.testing.assert_array_equal(again.train_ids, dm.train_ids)


def test_a_saved_dataset_dict_gives_its_split(tmp_path, datasets):
    path = tmp_path / "dict"
    splits = {"train": ["a", "b"], "test": ["c"]}
    datasets.DatasetDict({k: datasets.Dataset.from_dict({"text": v}) for k, v in splits.items()}).save_to_disk(
        str(path)
    )
    corpus = open_hf_corpus(str(path), "test", "text")
    assert [piece.text for _, piece in corpus.pieces()] == ["c"]
    with pytest.raises(DataError, match=r"has no split 'valid' \(its splits: train, test\); set data.hf_split"):
        open_hf_corpus(str(path), "valid", "text")


def test_bad_datasets_are_one_line(tmp_path, saved):
    with pytest.raises(DataError) as raised:
        open_hf_corpus(str(saved), "train", "text")
    assert str(raised.value) == (
        f"data.hf_dataset={saved} has no column 'text' (its columns: id, body); set data.text_field to the one that "
        "holds the text, e.g. data.text_field=body"
    )
    with pytest.raises(DataError, match=r"column 'id' holds int64, not text"):
        open_hf_corpus(str(saved), "train", "id")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"^cannot load data.hf_dataset=.*empty \(FileNotFoundError: "):
        open_hf_corpus(str(tmp_path / "empty"), "train", "text")
    with pytest.raises(ConfigError, match="data.path and data.hf_dataset both name the text"):
        DataConfig(context_length=4, batch_size=2, path="x", hf_dataset=str(saved))
    with pytest.raises(ConfigError, match="data.hf_split must name a split"):
        DataConfig(context_length=4, batch_size=2, hf_dataset=str(saved), hf_split="")


def test_without_the_datasets_library_it_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # `import datasets` fails
    with pytest.raises(DataError) as raised:
        open_hf_corpus("wikitext", "train", "text")
    assert str(raised.value) == (
        "data.hf_dataset=wikitext needs the datasets library, which is not installed; pip install attnlab[hf] "
        "(or save the text as .jsonl or .parquet and use data.path)"
    )
