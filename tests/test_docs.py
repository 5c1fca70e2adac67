"""Every command README.md and docs/ show works as written: it is valid shell, names a real entry
point, and its overrides parse and compose with conf/ (each job of a sweep, too) into values the
typed configs accept. A quoting mistake or a renamed key fails here."""

import re
import shlex
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from attnlab.cli import TOOLS, prepare_argv
from attnlab.data.corpus import NAMED_CORPORA
from attnlab.errors import AttnlabError
from attnlab.preflight import compose_checked, composing
from attnlab.sweeps.plan import first_job, plan_sweep
from attnlab.sweeps.report import argument_parser as report_arguments
from attnlab.training.task import validate_settings
from tests.conftest import ROOT

DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^\s*```(\S*)\s*$")
PROGRAMS = ("python", ".venv/bin/python", "attnlab", ".venv/bin/attnlab", "make", ".venv/bin/tensorboard")
HYDRA_FLAGS = {"-m", "--multirun", "--help", "-h", "--hydra-help", "--resolve", "--info", "-i", "--dry-run"}


def documented_commands() -> list[tuple[str, str, str | None]]:
    """``(where, command, error)``: the lines of ```bash blocks (``\\`` continuations joined),
    ``$ `` lines of other blocks, and inline code that starts with one of :data:`PROGRAMS`. A ``$``
    line whose output shows ``error: ...`` is an example of bad input: ``error`` is that line."""
    found = []
    for path in DOCS:
        lang, pending = None, ""
        lines = path.read_text(encoding="utf-8").splitlines()
        for n, line in enumerate(lines, 1):
            where = f"{path.relative_to(ROOT)}:{n}"
            fence = FENCE.match(line)
            if fence:
                lang = fence.group(1) if lang is None else None
                continue
            if lang == "bash":
                text = pending + line.strip()
                pending = ""
                if text.endswith("\\"):
                    pending = text[:-1] + " "
                elif text and not text.startswith("#"):
                    found.append((where, text, None))
            elif lang is not None:
                if line.startswith("$ "):
                    output = next(
                        (ln for ln in lines[n:] if ln.startswith("$ ") or "error: " in ln or ln.startswith("```")), ""
                    )
                    error = output.split("error: ", 1)[1].removesuffix("...").strip() if "error: " in output else None
                    found.append((where, line[2:], error))
            else:
                found += [
                    (where, code, None)
                    for code in re.findall(r"`([^`]+)`", line)
                    if code.split(" ")[0] in PROGRAMS and " " in code
                ]
    return found


COMMANDS = documented_commands()


def shell_words(command: str) -> list[str]:
    """The words the shell passes on; no pipes, redirections or placeholders a copy would trip on."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.commenters = "#"
    lexer.whitespace_split = True
    words = list(lexer)
    metachars = [w for w in words if w and set(w) <= set("<>|;&()")]
    assert not metachars, f"shell operators {metachars}: a placeholder or a pipe the reader would copy"
    assert not any("..." in w for w in words), "an elision ('...') in a command"
    while words and re.fullmatch(r"[A-Z_]+=\S*", words[0]):  # HYDRA_FULL_ERROR=1 python ...
        words.pop(0)
    return words


def check_hydra_command(config_name: str, args: list[str]) -> None:
    overrides, multirun, skip = [], False, False
    for arg in args:
        if skip:
            skip = False
        elif arg in ("-m", "--multirun"):
            multirun = True
        elif arg in ("--cfg", "-c", "--package", "-p"):
            skip = True
        elif arg not in HYDRA_FLAGS:
            overrides.append(arg)
    overrides = prepare_argv(overrides)  # free text quoted as the entry points quote it; our one-line check
    with composing(ROOT):
        jobs = [overrides]
        if multirun:  # every job of the grid (a named sweep's too), or the probes of a search's space
            sweeper = compose_checked(config_name, first_job(overrides), hydra=True).hydra.sweeper
            jobs = plan_sweep(OmegaConf.to_container(sweeper, resolve=False), overrides).jobs
        for job in jobs:
            cfg = compose_checked(config_name, job)  # an unknown key or option: attnlab's one line
            if config_name == "config":
                validate_settings(cfg)  # what a run checks in its first second, but the devices


def make_targets() -> set[str]:
    return set(re.findall(r"^([a-z]+):", (ROOT / "Makefile").read_text(), flags=re.M))


def test_the_docs_show_commands():
    assert len(COMMANDS) > 60
    assert {Path(where.split(":")[0]).name for where, _, _ in COMMANDS} >= {"README.md", "tools.md", "sweeps.md"}
    assert sum(error is not None for _, _, error in COMMANDS) >= 2  # the bad-input examples are checked too


@pytest.mark.parametrize(("where", "command", "error"), COMMANDS, ids=[where for where, _, _ in COMMANDS])
def test_a_documented_command_works_as_written(where, command, error):
    if error is None:
        check_command(command)
    else:  # the example of bad input fails with the line the docs show
        with pytest.raises(AttnlabError) as raised:
            check_command(command)
        assert str(raised.value).startswith(error)


def check_command(command: str) -> None:
    words = shell_words(command)
    program, args = words[0], words[1:]
    if program in ("python", ".venv/bin/python"):
        if args[:2] == ["-m", "attnlab.data.corpus"]:  # make data
            assert args[2:] and args[2] in NAMED_CORPORA, f"{command}: name a corpus of {sorted(NAMED_CORPORA)}"
            return
        if args[:2] == ["-m", "bench.doc_examples"]:  # rewrites the docs' example outputs from a run
            assert len(args) == 3 and re.fullmatch(r"outputs/\d{4}-\d\d-\d\d/\d\d-\d\d-\d\d", args[2]), command
            return
        if args[:2] == ["-m", "bench.induction"]:  # the induction experiment: both runs and the figure
            from bench.induction import argument_parser as induction_arguments

            induction_arguments().parse_args(args[2:])
            return
        assert args[:1] == ["train.py"] or args[:2] == ["-m", "bench.run"], f"{command}: python runs train.py"
        if args[0] == "train.py":
            check_hydra_command("config", args[1:])
    elif program in ("attnlab", ".venv/bin/attnlab"):
        tool, rest = (args + [""])[0], args[1:]
        if tool in ("", "--help", "-h"):
            return
        if tool == "report":
            report_arguments().parse_args(rest)
        else:
            assert tool in TOOLS, f"attnlab has no tool {tool!r}"
            check_hydra_command(TOOLS[tool][0], rest)
    elif program == "make":
        targets = [a for a in args if "=" not in a]
        assert set(targets) <= make_targets(), f"no make target {set(targets) - make_targets()}"
    elif program == ".venv/bin/tensorboard":
        assert args[:1] == ["--logdir"]
    elif program != "echo":
        raise AssertionError(f"{command}: not a command of attnlab's ({', '.join(PROGRAMS)})")


def documented_names() -> list[tuple[str, str]]:
    """``(where, name)`` for every dotted ``attnlab.x.y`` the docs name outside a YAML example
    (resolvers such as ``${attnlab.precision:...}`` and file names such as ``attnlab.db`` aside)."""
    found = []
    for path in DOCS:
        lang = None
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            fence = FENCE.match(line)
            if fence:
                lang = fence.group(1) if lang is None else None
                continue
            if lang == "yaml":
                continue
            for match in re.finditer(r"(?<![\w{$.])attnlab(?:\.[A-Za-z_]\w*)+(?![\w:(])", line):
                name = match.group(0)
                if not name.endswith((".db", ".log")) and name != "attnlab.load":
                    found.append((f"{path.relative_to(ROOT)}:{n}", name))
    return found


@pytest.mark.parametrize(("where", "name"), documented_names(), ids=[w for w, _ in documented_names()])
def test_a_documented_module_or_name_exists(where, name):
    import importlib

    parts = name.split(".")
    for cut in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
        try:
            obj = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attribute in parts[cut:]:
            obj = getattr(obj, attribute)  # AttributeError: the docs name something that is gone
        return
    raise AssertionError(f"{name} is not a module of attnlab")


@pytest.mark.slow
def test_the_bare_python_and_attnlab_of_the_docs_work_after_the_readmes_activation():
    """The docs write `python train.py` and `attnlab ...` after the README says, once, to
    `source .venv/bin/activate`: in a shell that does exactly that, on a PATH without the venv,
    the first documented training command and `attnlab --help` run."""
    import os
    import subprocess

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    activation = "source .venv/bin/activate"
    first_python = readme.index("\npython train.py")
    assert activation in readme[:first_python], "the README says how to get python and attnlab before using them"
    if not (ROOT / ".venv" / "bin" / "activate").is_file():
        pytest.skip("no .venv: make install creates it")
    command = next(c for _, c, _ in COMMANDS if c.startswith("python train.py ") and " -m " not in c)
    script = f"{activation} && {command.split('#')[0].strip()} --dry-run && attnlab --help"
    env = {"PATH": "/usr/bin:/bin", "HOME": os.environ.get("HOME", "/tmp"), "LANG": "C.UTF-8"}
    result = subprocess.run(["bash", "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "dry run: 1 job" in result.stdout and "all would start" in result.stdout
    assert "usage: attnlab <tool>" in result.stdout


def python_blocks(path: Path) -> list[str]:
    """The ```python blocks of a doc, in order."""
    blocks, lines, inside = [], [], False
    for line in path.read_text(encoding="utf-8").splitlines():
        fence = FENCE.match(line)
        if fence and not inside and fence.group(1) == "python":
            inside, lines = True, []
        elif fence and inside:
            inside = False
            blocks.append("\n".join(lines))
        elif inside:
            lines.append(line)
    return blocks


def test_the_python_examples_of_looking_inside_run(compose, monkeypatch):
    """docs/inside.md's blocks, run in order in one namespace, on an untrained model of the
    experiment=induction_heads shape in place of the run they load (the numbers in their comments
    are that run's, and are not checked here)."""
    import torch

    import attnlab.runs.checkpoint
    from attnlab.model import GPT, ModelConfig
    from attnlab.training.lit_gpt import split_runtime_options

    model, _ = split_runtime_options(OmegaConf.to_container(compose("experiment=induction_heads").model, resolve=True))
    torch.manual_seed(0)
    stand_in = GPT(ModelConfig.from_dict({**model, "vocab_size": 1002})).eval()
    monkeypatch.setattr(attnlab.runs.checkpoint, "load_model", lambda path: (stand_in, None))
    blocks = python_blocks(ROOT / "docs" / "inside.md")
    assert len(blocks) >= 3
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, "docs/inside.md", "exec"), namespace)
    assert namespace["model"] is stand_in and set(namespace["scores"]) >= {"induction", "prev_token"}
    assert namespace["scores"]["induction"].shape == (2, 4) and len(namespace["norms"]) == 2
