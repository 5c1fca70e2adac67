"""``python -m bench.doc_examples <run>``: rewrite the docs' example outputs by running the
commands they show on a finished default run (``make train``).

An example output in README.md or docs/*.md is the fenced block right after a marker

    <!-- output of: attnlab generate ckpt_path=RUN prompt="ROMEO:" max_new_tokens=40 -->

This runs the marker's command with ``RUN`` replaced by the run folder given (as written, from
the checkout, with this environment's ``attnlab``) and puts what it printed (stdout and stderr,
in the order a terminal shows them) in the block. So the text a reader sees is what the code prints for the run the README describes
(its figures say which machine: the last digits depend on the CPU's bf16 kernels). The run must
be a default run: its ``metrics.json`` lists no overrides.
"""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from attnlab.runs import layout
from attnlab.runs.atomic import atomic_write_text
from bench.common import ROOT

MARKER = re.compile(r"^<!-- output of: (?P<command>.+?) -->$")
RUN = "RUN"  # the placeholder of the run folder in a marker's command
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def markers(text: str) -> list[tuple[int, str]]:
    """``(line index, command)`` of every marker in ``text``."""
    return [(i, m["command"]) for i, line in enumerate(text.splitlines()) if (m := MARKER.match(line))]


def replace_outputs(text: str, output_of: Callable[[str], str]) -> str:
    """``text`` with the fenced block after each marker holding ``output_of(command)``."""
    lines = text.splitlines()
    for i, command in reversed(markers(text)):
        if i + 1 >= len(lines) or lines[i + 1] != "```":
            raise ValueError(f"the marker of line {i + 1} ({command}) is not followed by a ``` block")
        end = lines.index("```", i + 2)
        lines[i + 2 : end] = output_of(command).rstrip("\n").splitlines()
    return "\n".join(lines) + "\n"


def check_default_run(run: Path) -> None:
    record = layout.job_record(run)
    if not record.is_file():
        raise SystemExit(f"error: {run} has no {layout.JOB_RECORD}: pass a finished run folder (make train's)")
    overrides = json.loads(record.read_text(encoding="utf-8")).get("overrides") or []
    if overrides:
        raise SystemExit(f"error: {run} ran with overrides {overrides}; the docs' examples come from a default run")


def run_command(command: str, run: str, attnlab: Path) -> str:
    """What ``command`` (its ``RUN`` replaced by ``run``) prints, run from the checkout."""
    words = [run if w == RUN else w.replace(f"={RUN}", f"={run}") for w in shlex.split(command)]
    if words[0] == "attnlab":
        words[0] = str(attnlab)
    result = subprocess.run(
        words, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=ROOT, timeout=600
    )  # stdout and stderr in the order a terminal shows them
    if result.returncode != 0:
        raise SystemExit(f"error: `{command}` failed ({result.returncode}): {result.stdout.strip()[-500:]}")
    return result.stdout


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.doc_examples", description=__doc__.split("\n\n")[0])
    parser.add_argument("run", help="a finished default run, e.g. outputs/2026-12-01/22-10-38")
    parser.add_argument("--docs", nargs="*", type=Path, default=DOCS, help="the pages to rewrite (default: all)")
    args = parser.parse_args(argv)
    check_default_run(ROOT / args.run if not Path(args.run).is_absolute() else Path(args.run))
    attnlab = Path(sys.executable).with_name("attnlab")
    for page in args.docs:
        text = page.read_text(encoding="utf-8")
        if markers(text):
            atomic_write_text(page, replace_outputs(text, lambda c: run_command(c, args.run, attnlab)))
            print(f"{page}: {len(markers(text))} example output(s) rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
