"""A run's folder and what is in it: layout.py (the names, torch-free), atomic.py (crash-safe
writes), checkpoint.py (reading and writing checkpoints), resume.py (resuming a run in its folder)."""
