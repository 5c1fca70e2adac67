"""Text to batches: corpus.py (files, named corpora; formats.py: .txt, .md, JSON Lines, Parquet,
gzip -> documents, streamed in pieces; hf_datasets.py: a Hugging Face dataset) -> tokenizer.py
(tiktoken, char, corpus vocabulary, the end-of-text token) -> token_cache.py (ids tokenized once,
in worker processes, pool.py; keyed by the files' manifest) -> token_file.py (raw ids and a JSON
sidecar, memory-mapped) -> windows.py (sliding windows) -> datamodule.py (DataConfig and the
LightningDataModule). docs/data.md tells the whole path.

Nothing is imported here, so ``attnlab.data.tokenizer`` loads without Lightning.
"""
