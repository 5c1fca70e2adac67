"""The process and the machine: hardware.py (devices, precision), memory.py (glibc malloc tuning),
distributed.py (DDP under Hydra), console.py (log format, warnings), resolvers.py (the
``${attnlab.*:...}`` config resolvers)."""
