"""Looking at a model without changing it: probe.py (the probe text and its attention weights),
attention_maps.py (heatmaps), samples.py (continuations for the TEXT tab), summary.py (parameters
per module), hparams.py (the HPARAMS tab) and tensorboard.py (the TensorBoard callbacks)."""
