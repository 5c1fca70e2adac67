"""A run's folder and what is in it: layout.py (the names, torch-free), atomic.py (crash-safe
writes), storage.py (a full disk or a read-only folder in one line), lock.py (one writer per run
folder), checkpoint.py (reading and writing checkpoints), resume.py (resuming a run in its folder)."""
