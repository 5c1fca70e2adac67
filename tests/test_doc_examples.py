"""The docs' example outputs are what the commands print: ``bench.doc_examples`` rewrites each
marked block by running its command on a run, and every command of a marker is a documented one."""

from __future__ import annotations

import pytest

from attnlab.training.task import train
from bench import doc_examples
from tests.conftest import ATTNLAB, SEED_SAMPLE
from tests.test_docs import COMMANDS, check_command


def marked_commands() -> list[tuple[str, str]]:
    return [(page.name, command) for page in doc_examples.DOCS for _, command in doc_examples.markers(page.read_text())]


def test_the_model_dependent_examples_are_marked_and_their_commands_work():
    commands = marked_commands()
    assert {c.split()[1] for _, c in commands} >= {"generate", "eval"}
    documented = {c for _, c, _ in COMMANDS}
    for page, command in commands:
        concrete = command.replace("=RUN", "=outputs/2026-11-22/04-10-14")
        check_command(concrete)
        assert any(d.split("#")[0].split() == concrete.split() for d in documented), (
            f"{page}: the example's command `{command}` is not shown in a bash block"
        )


def test_replace_outputs_rewrites_only_the_marked_blocks():
    text = "intro\n<!-- output of: attnlab eval ckpt_path=RUN -->\n```\nold\nlines\n```\n\n```\nkept\n```\n"
    new = doc_examples.replace_outputs(text, lambda command: f"ran {command}\n")
    assert (
        new
        == "intro\n<!-- output of: attnlab eval ckpt_path=RUN -->\n```\nran attnlab eval ckpt_path=RUN\n```\n\n```\nkept\n```\n"
    )
    with pytest.raises(ValueError, match="not followed by a ``` block"):
        doc_examples.replace_outputs("<!-- output of: attnlab eval ckpt_path=RUN -->\ntext\n", str)


@pytest.mark.slow
def test_the_regenerated_example_is_what_generate_prints(tmp_path, compose):
    run = tmp_path / "run"
    train(
        compose("debug=tiny", f"data.path={SEED_SAMPLE}", f"paths.output_dir={run}")
    )  # a run folder, as train.py leaves it
    (run / "metrics.json").write_text('{"overrides": []}')  # stand in for the default run
    page = tmp_path / "page.md"
    marker = '<!-- output of: attnlab generate ckpt_path=RUN prompt="小" max_new_tokens=5 seed=3 -->'
    page.write_text(f"# A page\n\n{marker}\n```\nstale text\n```\n")
    assert doc_examples.main([str(run), "--docs", str(page)]) == 0
    block = page.read_text().split("```\n")[1]
    printed = doc_examples.run_command(marker[len("<!-- output of: ") : -len(" -->")], str(run), ATTNLAB)
    assert block.splitlines()[:-1] == printed.splitlines()[:-1]  # the text; the last line is the speed
    assert "小" in block.splitlines()[-2] and "tokens/s" in block.splitlines()[-1] and "stale" not in block
