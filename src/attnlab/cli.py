"""The command line: ``python train.py ...`` and ``attnlab <tool> ...`` both start here.

:func:`run_hydra_app` is the one bootstrap of every Hydra entry point:

1. ``ATTNLAB_ROOT`` (``paths.root`` in conf/) is the checkout, and the config resolvers are
   registered (:mod:`attnlab.system.resolvers`);
2. free text stays as typed: the value of every key in :data:`FREE_TEXT_KEYS` reaches the config
   exactly as the shell passed it, commas, brackets, quotes, CJK and emoji included
   (``prompt=小沈阳``, ``text="To be, or not to be"``); a value that is already one whole
   Hydra-quoted string (``prompt="'O Romeo, Romeo!'"``) is left to Hydra;
3. any other override that Hydra's grammar cannot read stops with one line that shows the quoting
   to use, and exit status 2, before Hydra composes anything;
4. Hydra composes ``conf/<config_name>.yaml`` and the task runs inside
   :func:`attnlab.errors.user_errors` (an :class:`AttnlabError` is one line and exit status 2).

``attnlab`` (a console script, ``pyproject.toml``) runs the tools on a trained model::

    attnlab generate ckpt_path=<run> prompt="ROMEO:"     conf/generate.yaml
    attnlab eval     ckpt_path=<run>                     conf/eval.yaml
    attnlab export   ckpt_path=<run> out=<folder>        conf/export.yaml
    attnlab attend   ckpt_path=<run> text="..."          conf/attend.yaml
    attnlab heads    ckpt_path=<run>                     conf/heads.yaml
    attnlab report   <sweep folder>                      (argparse)
"""

from __future__ import annotations

import importlib
import os
import re
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import hydra
from hydra._internal.utils import get_args_parser
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException

from attnlab.errors import ConfigError, user_errors
from attnlab.preflight import Check, dry_run, preflight
from attnlab.system.resolvers import register_resolvers

# Keys whose values are text, never Hydra syntax.
FREE_TEXT_KEYS = ("prompt", "text", "source", "callbacks.attention.text", "callbacks.samples.prompt")

# attnlab <tool>: (config in conf/, module whose main(cfg) runs it, what it does)
TOOLS = {
    "generate": ("generate", "attnlab.tools.generate", "continue a prompt with a trained model"),
    "eval": ("eval", "attnlab.tools.eval", "loss, ppl and bpb of a trained model on its val split or any text"),
    "export": ("export", "attnlab.tools.export", "a trained model as safetensors + JSON (attnlab.load reads it)"),
    "attend": ("attend", "attnlab.tools.attend", "a trained model's attention maps for any text, as PNG files"),
    "heads": ("heads", "attnlab.tools.head_report", "every head's attention scores and the loss increase without it"),
}
REPORT = ("report", "attnlab.sweeps.report", "rebuild a sweep folder's summary.csv, summary.md and summary.png")


def project_root() -> Path:
    """The checkout attnlab runs from: ``ATTNLAB_ROOT``, else the folder above ``src/attnlab``."""
    root = Path(os.environ.get("ATTNLAB_ROOT") or Path(__file__).resolve().parents[2])
    if not (root / "conf").is_dir():
        raise ConfigError(
            f"no conf/ folder in {root}; run attnlab from its checkout (pip install -e .) "
            "or set ATTNLAB_ROOT=<the checkout>"
        )
    return root


# --------------------------------------------------------------------------------------------
# Overrides: free text as typed, and one line for what Hydra cannot read
# --------------------------------------------------------------------------------------------


def override_key(override: str) -> str:
    """``key`` of ``key=value``, ``+key=value``, ``++key=value`` or ``~key``."""
    return override.split("=", 1)[0].lstrip("+~")


def omegaconf_literal(text: str) -> str:
    """``text`` escaped so that OmegaConf reads it back as itself: ``${`` is not an interpolation
    (k backslashes before it become 2k, then ``\\${``)."""
    return re.sub(r"(\\*)\$\{", lambda m: m.group(1) * 2 + "\\${", text)


def hydra_quoted(text: str) -> str:
    """``text`` as one Hydra single-quoted string: quotes escaped, and the backslashes before a
    quote (or before the closing one) doubled; Hydra reads it back as ``text``."""
    body = re.sub(r"(\\*)('|\Z)", lambda m: m.group(1) * 2 + ("\\'" if m.group(2) else ""), text)
    return f"'{body}'"


def _parses_as_one_string(override: str) -> bool:
    try:
        (parsed,) = OverridesParser.create().parse_overrides([override])
        value = parsed.value()
    except Exception:
        return False
    return isinstance(value, str)


def keep_free_text(override: str) -> str:
    """``override`` with the value of a free-text key quoted for Hydra, so it arrives as typed."""
    key, sep, value = override.partition("=")
    if not sep or override_key(override) not in FREE_TEXT_KEYS:
        return override
    if value[:1] in ("'", '"') and value[-1:] == value[:1] and len(value) > 1 and _parses_as_one_string(override):
        return override  # Hydra's own quoting, e.g. prompt="'O Romeo, Romeo!'"
    return f"{key}={hydra_quoted(omegaconf_literal(value))}"


def _suggest_quoting(override: str) -> str:
    key, _, value = override.partition("=")
    fixed = f"{key}={hydra_quoted(value)}"
    if not re.search(r'["$`\\!]', fixed):
        return f'{key}="{hydra_quoted(value)}"'  # what to type: the shell's double quotes around Hydra's
    return shlex.quote(fixed)


def check_overrides(overrides: Sequence[str]) -> None:
    """Raise :class:`ConfigError` with one line for the first override Hydra's grammar cannot read."""
    parser = OverridesParser.create()
    for override in overrides:
        try:
            parser.parse_overrides([override])
        except HydraException:  # OverrideParseException and the lexer's own
            if "=" not in override:
                raise ConfigError(
                    f"cannot read {override!r}: an override is key=value (or ~key to delete a key)"
                ) from None
            raise ConfigError(
                f"Hydra cannot read the override {override!r} (unquoted values take letters, digits and ._-/:@ "
                f"only; a list is [a,b]); to pass the value as text, quote it for Hydra inside the shell's quotes: "
                f"{_suggest_quoting(override)}"
            ) from None


def prepare_argv(argv: Sequence[str]) -> list[str]:
    """The command line with free text quoted for Hydra, after checking every override parses."""
    overrides = get_args_parser().parse_args(list(argv)).overrides
    quoted = [keep_free_text(o) for o in overrides]
    check_overrides(quoted)
    pending = list(zip(overrides, quoted))  # in argv order, among Hydra's flags
    out = []
    for arg in argv:
        if pending and arg == pending[0][0]:
            arg = pending.pop(0)[1]
        out.append(arg)
    return out


# --------------------------------------------------------------------------------------------
# The bootstrap
# --------------------------------------------------------------------------------------------


DRY_RUN = "--dry-run"  # list the jobs a command would launch and check each; launch nothing


def run_hydra_app(
    config_name: str, task: Callable[[Any], Any], argv: Sequence[str] | None = None, check: Check | None = None
) -> None:
    """Run ``task(cfg)`` on ``conf/<config_name>.yaml`` composed with ``argv`` (default
    ``sys.argv[1:]``), after :func:`attnlab.preflight.preflight` with the task's first-second
    ``check``. With ``--dry-run``: :func:`attnlab.preflight.dry_run` instead, and exit."""
    given = list(sys.argv[1:] if argv is None else argv)
    with user_errors():
        root = project_root()
        os.environ.setdefault("ATTNLAB_ROOT", str(root))
        register_resolvers()
        argv = prepare_argv([a for a in given if a != DRY_RUN])
        if DRY_RUN in given:
            sys.exit(dry_run(root, config_name, argv, check))
        preflight(root, config_name, argv, check)
    sys.argv = [sys.argv[0], *argv]

    def main(cfg):
        with user_errors():
            return task(cfg)

    hydra.main(version_base="1.3", config_path=str(root / "conf"), config_name=config_name)(main)()


def _tool_task(module_name: str) -> Callable[[Any], Any]:
    def task(cfg):
        return importlib.import_module(module_name).main(cfg)  # imported here: --help answers at once

    return task


def usage() -> str:
    width = max(map(len, [*TOOLS, REPORT[0]]))
    lines = ["usage: attnlab <tool> [key=value ...]   (attnlab <tool> --help: its options)", "", "tools:"]
    lines += [f"  {name:<{width}}  {what}" for name, (_, _, what) in TOOLS.items()]
    lines += [
        f"  {REPORT[0]:<{width}}  {REPORT[2]}",
        "",
        "Training is python train.py [key=value ...] (python train.py --help).",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """``attnlab <tool> ...``: the console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    tool, rest = argv[0], argv[1:]
    if tool == REPORT[0]:
        return importlib.import_module(REPORT[1]).main(rest)
    if tool not in TOOLS:
        known = ", ".join([*TOOLS, REPORT[0]])
        hint = " (training is python train.py ...)" if tool == "train" else ""
        print(f"error: unknown tool {tool!r}{hint}; use one of {known} (attnlab --help)", file=sys.stderr)
        return 2
    config_name, module_name, _ = TOOLS[tool]
    sys.argv = [f"attnlab {tool}", *rest]
    run_hydra_app(config_name, _tool_task(module_name), rest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
