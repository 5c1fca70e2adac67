"""The command line: free text reaches the config as typed, and an unreadable override is one line."""

import random

import pytest
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from attnlab.cli import (
    FREE_TEXT_KEYS,
    TOOLS,
    check_overrides,
    hydra_quoted,
    keep_free_text,
    omegaconf_literal,
    prepare_argv,
)
from attnlab.errors import ConfigError
from tests.conftest import ROOT, run_tool, run_train

TRICKY = [
    "To be, or not to be",
    "小沈阳",
    "emoji 😀 and 🎭",
    "it's",
    'say "hi"',
    "[1, 2]",
    "{a: b}",
    "a=b,c=d",
    "back\\slash",
    "ends with \\",
    "cost ${x} now",
    "\\${not} either",
    "line\nbreak",
    "tab\there",
    "$",
    "~x",
    "'Tis true",
    "'a', 'b'",
    "O Romeo, Romeo! wherefore art thou Romeo?",
]


def read_back(override: str):
    """What the config holds after Hydra parses ``override`` and OmegaConf resolves it."""
    (parsed,) = OverridesParser.create().parse_overrides([override])
    cfg = OmegaConf.create({"value": None})
    cfg.value = parsed.value()
    return cfg.value


def test_quoting_round_trips_any_text():
    rng = random.Random(0)
    alphabet = ["\\", "'", '"', "$", "{", "}", ",", "a", "小", " ", "\n", "=", "[", "😀"]
    texts = (
        TRICKY
        + ['"double"', "''", ""]
        + ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 12))) for _ in range(3000)]
    )
    for text in texts:
        assert read_back(f"prompt={hydra_quoted(omegaconf_literal(text))}") == text, text


@pytest.mark.parametrize("key", FREE_TEXT_KEYS)
def test_free_text_keys_keep_the_text_as_typed(key):
    for text in TRICKY:
        assert read_back(keep_free_text(f"{key}={text}")) == text
        assert read_back(keep_free_text(f"+{key}={text}")) == text


def test_hydra_quoting_of_free_text_still_works_and_quoting_is_idempotent():
    assert read_back(keep_free_text("prompt='O Romeo, Romeo!'")) == "O Romeo, Romeo!"  # the old documented form
    assert read_back(keep_free_text('prompt="O Romeo"')) == "O Romeo"  # one whole quoted string is Hydra's quoting
    once = keep_free_text("prompt=To be, or not")
    assert keep_free_text(once) == once  # a DDP rank re-runs the job with the quoted overrides
    assert keep_free_text("model.num_heads=2,4") == "model.num_heads=2,4"  # not free text: Hydra's syntax


def test_free_text_composes_into_every_entry_points_config():
    from hydra import compose, initialize_config_dir

    cases = [
        ("generate", "prompt=小沈阳, 江西", "prompt"),
        ("attend", "text=To be, or not to be", "text"),
        ("config", "callbacks.attention.text=To be, or not to be, that is the question", "callbacks.attention.text"),
        ("config", "callbacks.samples.prompt=[ROMEO]: 'hi' ${x} 😀", "callbacks.samples.prompt"),
    ]
    for config_name, override, key in cases:
        with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
            cfg = compose(config_name, overrides=prepare_argv([override])[-1:])
        assert OmegaConf.select(cfg, key) == override.split("=", 1)[1]


def test_an_override_hydra_cannot_read_is_one_line_with_the_quoting_to_use():
    with pytest.raises(ConfigError) as err:
        check_overrides(["data.path=/数据/x.txt"])
    message = str(err.value)
    assert "\n" not in message and "data.path=/数据/x.txt" in message
    suggested = message.rsplit(": ", 1)[1]
    assert suggested == "data.path=\"'/数据/x.txt'\""
    assert read_back(suggested.replace('"', "")) == "/数据/x.txt"  # what the shell passes on
    with pytest.raises(ConfigError, match="an override is key=value"):
        check_overrides(["nonsense"])


@pytest.mark.slow
def test_the_command_line_prints_our_line_not_hydras(tmp_path):
    result = run_train("data.path=/数据/x.txt", cwd=tmp_path)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith("error: Hydra cannot read the override") and result.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing started, nothing written
    listing = run_tool("--help", cwd=tmp_path)
    assert listing.returncode == 0 and all(tool in listing.stdout for tool in TOOLS)
    unknown = run_tool("train", cwd=tmp_path)
    assert unknown.returncode == 2 and "python train.py" in unknown.stderr
