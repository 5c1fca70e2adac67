"""Multirun sweeps: job.py (each job's record, and a failed job that lets the sweep go on),
report.py (summary.csv/.md/.png of a sweep folder), multirun.py (the Hydra callback that writes
the report when a multirun ends), study.py (an Optuna study: its sampler's seed, its best trial)."""
