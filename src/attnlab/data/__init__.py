"""Text to batches: corpus.py (files, named corpora; formats.py: .txt, .md, JSON Lines, Parquet,
gzip -> documents, streamed in pieces; synthetic.py: the generated ``repeats``; hf_datasets.py: a
Hugging Face dataset) -> tokenizer.py (tiktoken, char, corpus vocabulary, the end-of-text token)
-> token_cache.py (ids tokenized once, in worker processes, pool.py; keyed by the files' manifest)
-> token_file.py (raw ids and a JSON sidecar, memory-mapped, checked at each start) -> windows.py
(sliding windows) -> datamodule.py (DataConfig and the LightningDataModule). docs/data.md tells
the whole path.

Pairs to batches, for the encoder–decoder: pairs.py (a file of (source, target) pairs) or dates.py
(``data=dates``, generated) -> pair_vocab.py (Seq2SeqVocab, without Lightning) -> seq2seq.py
(Seq2SeqDataConfig and its LightningDataModule, length-bucketed batches); docs/seq2seq.md.
loaders.py holds what both data modules' loaders share.

Nothing is imported here, so ``attnlab.data.tokenizer`` loads without Lightning.
"""
