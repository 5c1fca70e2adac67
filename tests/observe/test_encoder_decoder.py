"""The encoder–decoder's attention maps and translations (attnlab.observe.encoder_decoder)."""

from __future__ import annotations

import torch

from attnlab.data.pair_vocab import Seq2SeqVocab
from attnlab.data.tokenizer import CharTokenizer, CorpusVocabTokenizer
from attnlab.model import EncoderDecoder, TransformerConfig
from attnlab.observe.encoder_decoder import seq2seq_attention, seq2seq_images, translations_markdown


def tiny(vocab: Seq2SeqVocab) -> EncoderDecoder:
    torch.manual_seed(0)
    V = vocab.vocab_size
    cfg = TransformerConfig(
        src_vocab_size=V, tgt_vocab_size=V, d_model=16, num_heads=2, num_encoder_layers=2, num_decoder_layers=1
    )
    return EncoderDecoder(cfg).eval()


def vocab_of(text: str) -> Seq2SeqVocab:
    base = CharTokenizer()
    return Seq2SeqVocab(CorpusVocabTokenizer(base, CorpusVocabTokenizer.vocab_of(base.encode(text), base.vocab_size)))


def test_each_kind_of_attention_has_its_shape_and_its_mask():
    vocab = vocab_of("3. März 2021-0")
    model = tiny(vocab)
    src = torch.as_tensor(vocab.encode("3. März 2021"))  # (S,)
    tgt_in = torch.cat([torch.tensor([vocab.bos_id]), torch.as_tensor(vocab.encode("2021-03-03"))])  # (T,)
    S, T = len(src), len(tgt_in)
    weights = seq2seq_attention(model, src, tgt_in)
    assert [w.shape for w in weights["encoder"]] == [(2, S, S)] * 2
    assert [w.shape for w in weights["decoder"]] == [(2, T, T)]
    assert [w.shape for w in weights["cross"]] == [(2, T, S)]
    for kind in ("encoder", "decoder", "cross"):
        for w in weights[kind]:
            torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))  # every query's weights sum to 1
    future = torch.triu(torch.ones(T, T, dtype=torch.bool), diagonal=1)
    assert (weights["decoder"][0][:, future] == 0).all()  # causal: no weight on later targets
    assert (weights["encoder"][0][:, torch.triu(torch.ones(S, S, dtype=torch.bool), diagonal=1)] > 0).all()  # both ways


def test_images_are_named_by_kind_and_layer_and_the_model_keeps_its_mode():
    vocab = vocab_of("3. März 2021-0")
    model = tiny(vocab).train()
    src = torch.as_tensor(vocab.encode("3. März 2021"))
    target = torch.as_tensor(vocab.encode("2021-03-03"))
    tgt_in = torch.cat([torch.tensor([vocab.bos_id]), target])
    tgt_out = torch.cat([target, torch.tensor([vocab.eos_id])])
    images = seq2seq_images(model, vocab, src, tgt_in, tgt_out, caption="step 3")
    assert set(images) == {
        "attention/encoder_layer_0",
        "attention/encoder_layer_1",
        "attention/decoder_layer_0",
        "attention/cross_layer_0",
    }
    assert all(image.ndim == 3 and image.shape[2] == 3 and image.dtype.name == "uint8" for image in images.values())
    assert model.training  # put back as it was


def test_the_translations_table_marks_exact_outputs_and_escapes_markdown():
    text = translations_markdown(["3rd of March 2021", "*12/03/21*"], ["2021-03-03", "2021-03-12"], ["2021-03-03", ""])
    lines = text.splitlines()
    assert lines[0] == "| source | reference | output | exact |"
    assert lines[2].endswith("| ✓ |") and lines[3].endswith("| **∅** | ✗ |")
    assert "\\*12/03/21\\*" in lines[3]
