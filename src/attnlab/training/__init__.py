"""Training with Lightning: lit_gpt.py (the LightningModule), optim.py (AdamW, Muon), schedule.py
(warmup + cosine), metrics.py (loss, ppl, bits per byte), callbacks.py (checkpoints, RNG state,
the NaN guard) and task.py (the train task: a composed config in, a trained run out)."""
