"""The pairs' data module (attnlab.data.seq2seq): the config's one-line errors, the vocabulary with
PAD/BOS/EOS and its round trip, padded batches and their masks, length buckets, batches that resume
at any step, exact validation sharded across DDP ranks, and pairs too long for the context."""

import gzip
import logging
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from attnlab.data.dates import date_pairs
from attnlab.data.pair_vocab import Seq2SeqVocab
from attnlab.data.pairs import read_pairs
from attnlab.data.seq2seq import (
    BucketedPairs,
    Seq2SeqBatch,
    Seq2SeqDataConfig,
    Seq2SeqDataModule,
    collate,
)
from attnlab.data.windows import IGNORE_INDEX
from attnlab.errors import ConfigError, DataError
from tests.conftest import ROOT

DATES = {"builtin": "dates", "num_pairs": 2_000, "context_length": 40, "batch_size": 16, "tokenizer": {"kind": "char"}}


def fake_trainer(world_size=1, rank=0, global_step=0, max_steps=-1, accumulate=1):
    return SimpleNamespace(
        world_size=world_size,
        global_rank=rank,
        global_step=global_step,
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        strategy=SimpleNamespace(root_device=torch.device("cpu")),
    )


@pytest.fixture(scope="module")
def dates():
    dm = Seq2SeqDataModule(seed=5, **DATES)
    dm.setup("fit")
    return dm


@pytest.fixture(scope="module")
def pairs_file(tmp_path_factory):
    """60 pairs of varied lengths: a word repeated 1..12 times -> its length in words."""
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("pairs") / "words.tsv.gz"
    lines = [f"{' '.join(['abc'] * n)}\t{n} words{'!' * (n % 3)}\n" for n in rng.integers(1, 13, size=60)]
    path.write_bytes(gzip.compress("".join(lines).encode()))
    return path


def pairs_module(path, **data):
    dm = Seq2SeqDataModule(**{"path": str(path), "context_length": 64, "batch_size": 4, **data})
    dm.setup()
    return dm


# -- the config ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"kind": "text"}, "data.kind must be pairs"),
        ({"builtin": None}, "no pairs to train on; set data.path=/some/pairs.tsv (or .jsonl), or data.builtin=dates"),
        ({"path": "a.tsv"}, "data.builtin=dates and data.path='a.tsv' are both set; set data.builtin=null"),
        ({"builtin": "numbers"}, "unknown data.builtin='numbers'; use one of dates"),
        ({"too_long": "drop"}, "unknown data.too_long='drop'; use one of error, truncate"),
        ({"context_length": 1}, "data.context_length must be an integer >= 2, got 1"),
        ({"val_fraction": 1.0}, "data.val_fraction must be in (0, 1), got 1.0"),
        ({"data_seed": "0"}, "data.data_seed must be an integer, got '0'"),
        ({"source_field": ""}, "data.source_field must name a field of the records"),
        ({"tokenizer": {"kind": "bpe"}}, "unknown data.tokenizer.kind='bpe'; use one of char, tiktoken"),
        ({"tokenizer": {"kind": "char", "corpus_vocab": False}}, "corpus_vocab=false does not apply"),
        ({"tokenizer": {"kind": "tiktoken", "max_vocab": 4096}}, "max_vocab caps text data's vocabulary"),
        ({"text_field": "text"}, "unknown data option(s) ['text_field']"),
    ],
)
def test_a_bad_config_value_is_one_line(change, expected):
    with pytest.raises(ConfigError) as err:
        Seq2SeqDataConfig.from_dict({**DATES, **change})
    assert "\n" not in str(err.value) and expected in str(err.value), str(err.value)


def test_the_configs_of_conf_data_build_their_modules(pairs_file, tmp_path):
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        base = [f"paths.root={ROOT}", f"paths.output_dir={tmp_path}"]
        dates_cfg = compose("config", overrides=[*base, "data=dates", "data.num_pairs=300"])
        pairs_cfg = compose("config", overrides=[*base, "data=pairs", f"data.path={pairs_file}"])
        no_path = compose("config", overrides=[*base, "data=pairs"])
    dm = Seq2SeqDataModule.from_config(dates_cfg)
    dm.setup()
    assert (dm.name, dm.cfg.kind, dm.seed, len(dm.train_pairs), len(dm.val_pairs)) == ("dates", "pairs", 1337, 270, 30)
    assert dm.cfg.tokenizer["kind"] == "char" and dm.src_context_length == dm.tgt_context_length == 40
    longest = max(max(len(s), len(t)) for s, t in dm.train_pairs + dm.val_pairs)
    assert longest <= 32 < dm.cfg.context_length  # the longest date (30) fits with room
    dm = Seq2SeqDataModule.from_config(pairs_cfg)
    dm.setup()
    assert dm.name == "words" and len(dm.train_pairs) + len(dm.val_pairs) == 60
    with pytest.raises(ConfigError, match="no pairs to train on"):
        Seq2SeqDataModule.from_config(no_path)


# -- the vocabulary -----------------------------------------------------------------------------


def test_the_specials_follow_the_shared_vocabulary_of_both_sides(dates):
    vocab = dates.vocab
    train, val = date_pairs(2_000, 0.1, seed=0)  # data_seed 0
    chars = {c for pair in train + val for side in pair for c in side}
    size = len(chars)
    assert vocab.tokenizer.vocab_size == size and dates.vocab_size == vocab.vocab_size == size + 3
    assert (vocab.pad_id, vocab.bos_id, vocab.eos_id) == (size, size + 1, size + 2)
    assert vocab.token_strings([vocab.pad_id, vocab.bos_id, vocab.eos_id]) == ["<pad>", "<s>", "</s>"]
    ids = vocab.encode("3. März 2021")
    assert ids.dtype == np.int64 and ids.max() < size and vocab.token_strings(ids) == list("3. März 2021")


def test_decode_stops_at_the_first_eos_and_skips_pad_bos_and_ignored_targets(dates):
    v = dates.vocab
    ids = [v.bos_id, *v.encode("1999-"), v.pad_id, *v.encode("01"), v.eos_id, *v.encode("99"), v.eos_id]
    assert v.decode(ids) == "1999-01"
    assert v.decode(torch.tensor([*v.encode("12"), IGNORE_INDEX, IGNORE_INDEX])) == "12"
    assert v.decode(np.array([v.eos_id, *v.encode("12")])) == ""


def test_the_vocabulary_round_trips_through_a_checkpoint(dates, tmp_path, pairs_file):
    torch.save({"tokenizer": dates.vocab.state_dict()}, tmp_path / "v.pt")
    state = torch.load(tmp_path / "v.pt", weights_only=True)["tokenizer"]
    again = Seq2SeqVocab.from_state(state)
    text = "Mittwoch, 3. März 2021 2021-03-03"
    assert (again.vocab_size, again.pad_id, again.bos_id, again.eos_id) == (
        dates.vocab.vocab_size,
        dates.vocab.pad_id,
        dates.vocab.bos_id,
        dates.vocab.eos_id,
    )
    assert np.array_equal(again.encode(text), dates.vocab.encode(text)) and again.decode(again.encode(text)) == text
    bpe = pairs_module(pairs_file, tokenizer={"kind": "tiktoken", "encoding": "cl100k_base"}).vocab
    bpe_again = Seq2SeqVocab.from_state(bpe.state_dict())
    assert bpe.vocab_size < 100 and np.array_equal(bpe_again.encode("abc abc abc"), bpe.encode("abc abc abc"))
    assert bpe_again.decode(bpe.encode("7 words!")) == "7 words!"
    with pytest.raises(DataError, match="not a seq2seq vocabulary"):
        Seq2SeqVocab.from_state(dates.vocab.tokenizer.state_dict())


# -- batches ------------------------------------------------------------------------------------


def test_a_batch_pads_and_masks_each_side(dates):
    v = dates.vocab
    texts = [("3 Mar 2021", "2021-03-03"), ("Donnerstag, 30. September 2021", "2"), ("1/1/2000", "2000-01-01")]
    pairs = [(v.encode(s), np.array([v.bos_id, *v.encode(t), v.eos_id])) for s, t in texts]
    batch = collate(pairs, v.pad_id)
    assert isinstance(batch, Seq2SeqBatch) and batch.src.shape == (3, 30) and batch.tgt_in.shape == (3, 11)
    assert batch.src.dtype == batch.tgt_in.dtype == batch.tgt_out.dtype == torch.long
    assert batch.src_mask.dtype == batch.tgt_mask.dtype == torch.bool
    assert batch.src_mask.sum(1).tolist() == [10, 30, 8] and batch.tgt_mask.sum(1).tolist() == [11, 2, 11]
    assert (batch.src[~batch.src_mask] == v.pad_id).all() and (batch.tgt_in[~batch.tgt_mask] == v.pad_id).all()
    assert (batch.tgt_out[~batch.tgt_mask] == IGNORE_INDEX).all() and (batch.tgt_in[:, 0] == v.bos_id).all()
    two = int(v.encode("2")[0])
    assert batch.tgt_in[1, :2].tolist() == [v.bos_id, two] and batch.tgt_out[1, :2].tolist() == [two, v.eos_id]
    assert torch.equal(batch.tgt_in[:, 1:][batch.tgt_mask[:, 1:]], batch.tgt_out[:, :-1][batch.tgt_mask[:, 1:]])
    assert [v.decode(row) for row in batch.src] == [s for s, _ in texts]
    assert [v.decode(row) for row in batch.tgt_out] == [t for _, t in texts]


def padding(dataset, n=40) -> float:
    """The fraction of source and target positions that are padding, over batches 0..n-1."""
    batches = [dataset.batch(k) for k in range(n)]
    real = sum(int(b.src_mask.sum() + b.tgt_mask.sum()) for b in batches)
    return 1 - real / sum(b.src_mask.numel() + b.tgt_mask.numel() for b in batches)


def test_length_buckets_cut_the_padding(dates):
    pairs, pad = dates.train_pairs, dates.vocab.pad_id
    bucketed, unbucketed = BucketedPairs(pairs, 16, pad, seed=0), BucketedPairs(pairs, 16, pad, 0, bucket_batches=1)
    assert padding(bucketed) < 0.03 and padding(unbucketed) > 0.15  # measured: 1.3% and 26% (targets: none)


def test_every_pair_is_drawn_once_an_epoch_and_batches_differ_by_seed_and_rank(dates):
    ds = BucketedPairs(dates.train_pairs, 16, dates.vocab.pad_id, seed=0)
    epoch = ds.epoch(0)
    assert epoch.shape == (1800 // 16, 16) and len(np.unique(epoch)) == epoch.size
    assert not np.array_equal(ds.epoch(1), epoch)
    for seed, rank in ((1, 0), (0, 1)):
        other = BucketedPairs(dates.train_pairs, 16, dates.vocab.pad_id, seed=seed, rank=rank)
        assert not np.array_equal(other.epoch(0), epoch)
    again = BucketedPairs(dates.train_pairs, 16, dates.vocab.pad_id, seed=0)
    assert all(torch.equal(a, b) for a, b in zip(again.batch(7), ds.batch(7)))


def test_batch_k_is_the_same_when_a_run_starts_at_k(dates):
    """A resumed run (start = global_step * accumulate) draws what the uninterrupted one drew,
    also across an epoch boundary (112 batches an epoch here), and with loader workers."""
    pairs, pad = dates.train_pairs, dates.vocab.pad_id
    whole = list(BucketedPairs(pairs, 16, pad, seed=dates.seed, num_batches=116))
    resumed = list(BucketedPairs(pairs, 16, pad, seed=dates.seed, num_batches=116, start=110))
    assert len(whole) == 116 and len(resumed) == 6
    assert all(torch.equal(a, b) for x, y in zip(whole[110:], resumed) for a, b in zip(x, y))
    dates.trainer = fake_trainer(global_step=55, max_steps=58, accumulate=2)
    try:
        loader = dates.train_dataloader()
        assert len(loader) == 116  # the run's length, also when resuming (as RandomWindows)
        assert all(torch.equal(a, b) for x, y in zip(whole[110:], loader) for a, b in zip(x, y))
        dates.cfg.num_workers = 2
        with_workers = list(dates.train_dataloader())
        assert len(with_workers) == 6 and all(
            torch.equal(a, b) for x, y in zip(resumed, with_workers) for a, b in zip(x, y)
        )
    finally:
        dates.trainer, dates.cfg.num_workers = None, 0


# -- validation ---------------------------------------------------------------------------------


def val_rows(dm) -> list[tuple[str, str]]:
    return [(dm.vocab.decode(s), dm.vocab.decode(t)) for b in dm.val_dataloader() for s, t in zip(b.src, b.tgt_out)]


def test_validation_takes_every_val_pair_once_in_the_order_of_val_texts(dates):
    assert val_rows(dates) == dates.val_texts and len(dates.val_texts) == 200
    lengths = [len(s) for s, _ in dates.val_pairs]
    assert lengths == sorted(lengths)  # sorted by length: little padding
    assert {t for _, t in dates.val_texts}.isdisjoint(dates.vocab.decode(t) for _, t in dates.train_pairs)


@pytest.mark.parametrize("world_size", [2, 3])
def test_under_ddp_each_val_pair_is_on_exactly_one_rank(dates, world_size):
    rows = []
    try:
        for rank in range(world_size):
            dates.trainer = fake_trainer(world_size=world_size, rank=rank)
            rows += val_rows(dates)
    finally:
        dates.trainer = None
    assert sorted(rows) == sorted(dates.val_texts)


def test_fewer_val_pairs_than_processes_is_one_line(pairs_file):
    dm = pairs_module(pairs_file)  # 6 val pairs
    dm.trainer = fake_trainer(world_size=8)
    with pytest.raises(DataError, match=r"^the validation split has 6 pairs, fewer than the 8 processes; use more"):
        dm.val_dataloader()


# -- user pairs: the split, the lengths ---------------------------------------------------------


def test_the_split_of_user_pairs_is_fixed_by_data_seed_not_by_the_training_seed(pairs_file):
    a, b = pairs_module(pairs_file, seed=1), pairs_module(pairs_file, seed=2)
    assert a.val_texts == b.val_texts and len(a.val_texts) == 6 and len(a.train_pairs) == 54
    c = pairs_module(pairs_file, data_seed=1)
    assert sorted(c.val_texts) != sorted(a.val_texts)
    train = [(c.vocab.decode(s), c.vocab.decode(t)) for s, t in c.train_pairs]
    assert sorted(train + c.val_texts) == sorted(read_pairs(pairs_file))


def test_an_empty_split_is_one_line(tmp_path):
    path = tmp_path / "two.tsv"
    path.write_text("a\tb\nc\td\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        pairs_module(path)
    assert str(err.value) == (
        f"data.path {str(path)!r} has 2 pairs: 2 train / 0 val at data.val_fraction=0.1; add pairs or change "
        f"data.val_fraction"
    )
    with pytest.raises(DataError) as err:
        Seq2SeqDataModule(**{**DATES, "num_pairs": 4}).setup()
    assert str(err.value) == (
        "data.num_pairs=4: 4 train / 0 val at data.val_fraction=0.1; raise data.num_pairs or change data.val_fraction"
    )


def test_val_sources_that_training_has_too_are_one_warning(tmp_path, caplog):
    path = tmp_path / "repeats.tsv"
    path.write_text("".join(f"same\t{i}\n" for i in range(10)) + "other\tx\n" * 10, encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="attnlab.data.seq2seq"):
        dm = pairs_module(path, val_fraction=0.2)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == ["4 of 4 val pairs have a source that training pairs have too"] and len(dm.val_texts) == 4


def test_setup_is_idempotent(dates):
    vocab, train = dates.vocab, dates.train_pairs
    dates.setup("validate")
    assert dates.vocab is vocab and dates.train_pairs is train


def test_pairs_too_long_are_one_line_with_the_context_length_that_fits(pairs_file):
    # sources of up to 12 x "abc" = 47 characters; targets "12 words!!" and the like, 10 + BOS/EOS
    with pytest.raises(DataError) as err:
        pairs_module(pairs_file, context_length=20)
    text = str(err.value)
    assert "\n" not in text and "pairs do not fit data.context_length=20" in text
    assert "the longest: a source of 47 tokens, a target of 10 (+ BOS/EOS)" in text
    assert text.endswith("set data.context_length=47, or data.too_long=truncate to cut them")
    too_long = int(text.split(" of ")[0])
    assert too_long == sum(len(s) > 20 for s, _ in read_pairs(pairs_file))
    pairs_module(pairs_file, context_length=47)  # the length it names fits


def test_a_target_of_n_tokens_takes_n_plus_one_positions(tmp_path):
    path = tmp_path / "long_targets.tsv"
    path.write_text("".join(f"a\t{'x' * n}\n" for n in range(1, 21)), encoding="utf-8")
    with pytest.raises(
        DataError, match=r"^2 of 20 pairs .* a target of 20 \(\+ BOS/EOS\)\); set data.context_length=21,"
    ):
        pairs_module(path, context_length=19)
    pairs_module(path, context_length=21)


def test_truncate_cuts_with_one_warning(pairs_file, caplog):
    with caplog.at_level(logging.WARNING, logger="attnlab.data.seq2seq"):
        dm = pairs_module(pairs_file, context_length=8, too_long="truncate")
    warnings = [r.getMessage() for r in caplog.records if "data.context_length" in r.getMessage()]
    assert len(warnings) == 1 and warnings[0].startswith("cut ") and "to data.context_length=8" in warnings[0]
    assert int(warnings[0].split()[1]) == sum(len(s) > 8 or len(t) > 7 for s, t in read_pairs(pairs_file))
    for src, tgt in dm.train_pairs + dm.val_pairs:
        assert len(src) <= 8 and len(tgt) <= 9  # T = 8 positions: tgt[:-1] in, tgt[1:] out
    batch = next(iter(dm.val_dataloader()))
    assert batch.src.shape[1] <= 8 and batch.tgt_in.shape[1] <= 8
    v = dm.vocab
    for (src, tgt), (source, target) in zip(dm.val_pairs, dm.val_texts):
        assert np.array_equal(src, v.encode(source)[:8])
        assert np.array_equal(tgt, [v.bos_id, *v.encode(target), v.eos_id][:9])  # a cut target has no EOS
