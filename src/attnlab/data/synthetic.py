"""Corpora attnlab writes itself: deterministic from a seed, no download, the same bytes everywhere.

``repeats``: lines of random digits, each line one passage written twice, ``"<D> <D>\\n"``, where
D is n groups of three random digits (n uniform in :data:`PASSAGE_GROUPS`). Every three-digit
string is one token of tiktoken's ``cl100k_base`` (which splits digit runs into groups of three),
so the corpus vocabulary is the 1,000 groups, the space and the newline. The first copy cannot be
predicted (ln 1000 = 6.9 nats a group); each group of the second copy can, by finding the
current group in the first copy and reading the one after it: what an induction head does
(Olsson et al. 2022), and what a one-layer model cannot do. The passages' lengths vary, so no
fixed offset looks back to the copy. ``conf/data/repeats.yaml`` selects it; docs/inside.md has the
experiment (``experiment=induction_heads``).

The corpus is small on purpose: 5,000 lines, which a 2,000-step run reads 11 times. A two-layer
model grew its induction head by step ~1,200 on it with every seed tried, and with none of three
seeds within 2,000 steps on 100,000 lines (read less than once), measured in docs/inside.md.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from attnlab.runs.atomic import atomic_write_text

GROUPS = 1000  # the values of a group of three digits, 000..999
PASSAGE_GROUPS = (3, 32)  # the shortest and longest passage, in groups (tokens); the probe's R is T/2 = 32
REPEATS_SEED = 0
REPEATS_LINES = 5_000  # 185,506 tokens, 0.54 MB: small on purpose (module docstring)
REPEATS_FILE = "repeats.txt"


def repeated_passages(lines: int, seed: int, groups: tuple[int, int] = PASSAGE_GROUPS) -> list[np.ndarray]:
    """``lines`` passages of random groups 0..999, each of ``groups[0]..groups[1]`` groups."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(groups[0], groups[1] + 1, size=lines)  # (lines,)
    return [rng.integers(0, GROUPS, size=n) for n in lengths]


def repeats_text(passages: list[np.ndarray]) -> str:
    """The corpus's text: one line per passage, the passage twice, ``"042917 042917\\n"``."""
    lines = []
    for passage in passages:
        digits = "".join(f"{group:03d}" for group in passage)
        lines.append(f"{digits} {digits}\n")
    return "".join(lines)


def write_repeats(path: str | Path, lines: int = REPEATS_LINES, seed: int = REPEATS_SEED) -> Path:
    """Write the ``repeats`` text of ``lines`` passages drawn with ``seed`` to ``path`` (atomically)."""
    path = Path(path)
    atomic_write_text(path, repeats_text(repeated_passages(lines, seed)))
    return path


def prepare_repeats(target: Path) -> Path:
    """The ``repeats`` corpus, ``target/repeats.txt``: written on first use, then kept."""
    target = Path(target)
    if not (target / REPEATS_FILE).is_file():
        write_repeats(target / REPEATS_FILE, REPEATS_LINES, REPEATS_SEED)
    return target
