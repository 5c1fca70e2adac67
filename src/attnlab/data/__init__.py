"""Text to batches: corpus.py (files, named corpora; formats.py: .txt, .md, JSON Lines, Parquet,
gzip -> documents) -> tokenizer.py (tiktoken, char, corpus
vocabulary) -> token_cache.py (ids tokenized once) -> windows.py (sliding windows) ->
datamodule.py (DataConfig and the LightningDataModule).

Nothing is imported here, so ``attnlab.data.tokenizer`` loads without Lightning.
"""
