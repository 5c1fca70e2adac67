"""data.val_tokens: exact validation on a fixed prefix of the val split, the same windows every
time, capped before the windows are sharded across DDP ranks."""

import logging
from types import SimpleNamespace

import pytest
import torch

from attnlab.data.datamodule import DataConfig, TextDataModule
from attnlab.data.windows import IGNORE_INDEX, SequentialWindows
from attnlab.errors import ConfigError, DataError

T = 8


@pytest.fixture(scope="module")
def text_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("text") / "a.txt"
    path.write_text(
        "".join(f"line {i}: to be, or not to be\n" for i in range(40)), encoding="utf-8"
    )  # 1,150 characters
    return path


def datamodule(text_file, tmp_path, rank=0, world_size=1, **data):
    dm = TextDataModule(
        context_length=T,
        batch_size=4,
        path=str(text_file),
        tokenizer={"kind": "char"},
        cache_dir=str(tmp_path / "cache"),
        val_fraction=0.2,  # 230 val characters
        **data,
    )
    dm.setup("fit")
    if world_size > 1:
        dm.trainer = SimpleNamespace(
            world_size=world_size, global_rank=rank, strategy=SimpleNamespace(root_device=torch.device("cpu"))
        )
    return dm


def windows(loader) -> list[tuple[int, ...]]:
    """The validation windows a loader yields, each as its T+1 tokens (x and y's last target)."""
    out = []
    for x, y in loader:
        for xi, yi in zip(x, y):
            out.append((*xi.tolist(), yi.tolist()[-1]))
    return out


def expected_windows(ids) -> list[tuple[int, ...]]:
    dataset = SequentialWindows(ids, T)
    return [(*x.tolist(), y.tolist()[-1]) for x, y in (dataset[i] for i in range(len(dataset)))]


@pytest.mark.parametrize("cap", [T + 1, 50, 57, 229])
def test_the_cap_gives_exactly_the_windows_of_the_prefix(text_file, tmp_path, cap):
    whole = datamodule(text_file, tmp_path, val_tokens=None).val_ids  # (230,) the whole val split
    dm = datamodule(text_file, tmp_path, val_tokens=cap)
    assert len(whole) == 230 and (dm.val_ids == whole[:cap]).all()  # what validation and the tools see
    assert windows(dm.val_dataloader()) == expected_windows(whole[:cap])
    targets = sum(int((y != IGNORE_INDEX).sum()) for _, y in dm.val_dataloader())
    assert targets == cap - 1  # every token of the prefix after the first, once
    again = datamodule(text_file, tmp_path / "again", val_tokens=cap)
    assert windows(again.val_dataloader()) == windows(dm.val_dataloader())  # the same windows every time


@pytest.mark.parametrize("cap", [None, 230, 231, 1_000_000])
def test_null_or_a_cap_beyond_the_split_validates_the_whole_split(text_file, tmp_path, cap, caplog):
    with caplog.at_level(logging.INFO, logger="attnlab.data.datamodule"):
        dm = datamodule(text_file, tmp_path, val_tokens=cap)
    assert len(dm.val_ids) == 230 and windows(dm.val_dataloader()) == expected_windows(dm.val_ids)
    assert len(windows(dm.val_dataloader())) == 29  # ceil(229 / 8)
    assert not any("data.val_tokens" in r.getMessage() for r in caplog.records)


def test_the_cap_is_logged_once(text_file, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="attnlab.data.datamodule"):
        dm = datamodule(text_file, tmp_path, val_tokens=100)
        dm.setup("validate")  # set up already: nothing again
        dm.val_dataloader()
    lines = [r.getMessage() for r in caplog.records if "data.val_tokens" in r.getMessage()]
    assert lines == ["validating on the first 100 of 230 val tokens (data.val_tokens)"]


@pytest.mark.parametrize("cap", [100, None])
def test_the_cap_applies_before_the_windows_are_sharded_across_ranks(text_file, tmp_path, cap):
    single = windows(datamodule(text_file, tmp_path, val_tokens=cap).val_dataloader())
    shards = [windows(datamodule(text_file, tmp_path, r, 3, val_tokens=cap).val_dataloader()) for r in range(3)]
    assert sum(map(len, shards)) == len(single) == (13 if cap else 29)  # no padding, no repeats
    assert sorted(w for shard in shards for w in shard) == sorted(single)


def test_a_cap_of_fewer_windows_than_processes_is_one_line(text_file, tmp_path):
    dm = datamodule(text_file, tmp_path, 0, 3, val_tokens=T + 1)  # one window, three processes
    with pytest.raises(DataError) as raised:
        dm.val_dataloader()
    assert str(raised.value).endswith(
        "fewer than the 3 processes; use more text, a larger data.val_fraction or data.val_tokens, or fewer devices"
    )


@pytest.mark.parametrize(
    ("value", "line"),
    [
        (
            8,
            "data.val_tokens=8 is shorter than one window of data.context_length+1 = 9 tokens; use an integer >= 9, or null for the whole val split",
        ),
        (
            0,
            "data.val_tokens=0 is shorter than one window of data.context_length+1 = 9 tokens; use an integer >= 9, or null for the whole val split",
        ),
        (
            1e6,
            "data.val_tokens must be a number of tokens (an integer >= 9) or null for the whole val split, got 1000000.0",
        ),
        (
            "all",
            "data.val_tokens must be a number of tokens (an integer >= 9) or null for the whole val split, got 'all'",
        ),
        (
            True,
            "data.val_tokens must be a number of tokens (an integer >= 9) or null for the whole val split, got True",
        ),
    ],
)
def test_bad_values_are_one_line(value, line):
    with pytest.raises(ConfigError) as raised:
        DataConfig(context_length=T, batch_size=2, path="x", val_tokens=value)
    assert str(raised.value) == line


def test_the_default_keeps_every_corpus_we_ship_whole(compose):
    for preset in ("shakespeare", "repeats", "seed_sample"):
        cfg = compose(f"data={preset}")
        assert cfg.data.val_tokens == 1_000_000 > 136_549  # Shakespeare's val split, the largest
        assert cfg.data.text_field == "text"
    assert DataConfig(context_length=T, batch_size=2, path="x").val_tokens == 1_000_000  # a saved config without it
    cfg = compose("data.val_tokens=null", "data.context_length=256")
    assert DataConfig.from_dict(dict(cfg.data)).val_tokens is None
