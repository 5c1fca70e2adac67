"""The attention explorer in a real browser: headless Chromium (Debian's ``chromium``, driven by
Playwright) against a real ``tensorboard`` serving the package's tiny run, runs of a random
4-layer model on probes of 64 and 256 tokens and on Chinese text, a run without attention data
and one with a damaged step file; and ``attnlab attend``'s attention.html from ``file://`` with
the network blocked.

Skipped, with the reason, where chromium or playwright is missing, except under CI (``CI`` set,
as .ci/run sets it), where that fails. ``ATTNLAB_SCREENSHOTS=docs/images`` also saves the
screenshots of docs/explorer.md.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.observe.explorer.log import LOG_DIR, logged_steps, read_step, write_attention, write_scores
from attnlab.observe.explorer.page import model_step
from tests.conftest import ROOT

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
SHOTS = os.environ.get("ATTNLAB_SCREENSHOTS")
LINE = "To be, or not to be, that is the question:\n\tWhether 'tis nobler in the mind to suffer "
CHINESE = "注意力机制很有趣。\n我们看看 😀 表情"
SHARPEN = 3.0  # the random models' query and key weights, times this and the step's number


def need_browser():
    reason = None
    if not Path(CHROMIUM).is_file():
        reason = "no /usr/bin/chromium (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            reason = "no playwright (pip install -r requirements.lock)"
    if reason and os.environ.get("CI"):
        pytest.fail(f"browser tests must run under CI: {reason}")
    if reason:
        pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Renumbered:
    """cl100k's token texts for ids renumbered 0..V-1, as a corpus vocabulary numbers them (a
    small output layer)."""

    def __init__(self, tokenizer, vocab: np.ndarray):
        self.tokenizer, self.vocab = tokenizer, vocab

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([int(self.vocab[i]) for i in ids])


def random_run(folder: Path, text: str, tokens: int | None, steps: int) -> None:
    """Side data of a random 4-layer, 4-head model on ``text`` (its first ``tokens`` cl100k tokens),
    a new draw of the weights at each step, as a run of the default shape logs it."""
    from attnlab.data.tokenizer import TiktokenTokenizer
    from attnlab.model import GPT, ModelConfig

    ids = np.asarray(TiktokenTokenizer().encode(text * (1 + (tokens or 0) // 16))[:tokens], dtype=np.int64)
    vocab, local = np.unique(ids, return_inverse=True)
    tokenizer = Renumbered(TiktokenTokenizer(), vocab)
    for n in range(steps):
        torch.manual_seed(n)
        cfg = ModelConfig(vocab_size=len(vocab), context_length=len(ids), d_model=64, num_heads=4, num_layers=4)
        model = GPT(cfg)
        with torch.no_grad():  # queries and keys grow: sharper maps at each step, as training makes them
            for name, p in model.named_parameters():
                if name.endswith(("query.weight", "key.weight")):
                    p.mul_(SHARPEN * (n + 1))
        s = model_step(model, tokenizer, torch.from_numpy(local), 250 * n)
        write_attention(folder / LOG_DIR, s.step, s.tokens, s.ids, list(s.weights))
        write_scores(folder / LOG_DIR, s.step, {k: np.array(v, dtype=float) for k, v in s.scores.items()})


@pytest.fixture(scope="module")
def server(tiny_run, tmp_path_factory):
    """``(base URL, logdir, tensorboard's log)``: one tensorboard process for the module."""
    need_browser()
    run, _ = tiny_run
    logdir = tmp_path_factory.mktemp("explorer")
    for name, parts in (("run", (LOG_DIR, "tensorboard")), ("nodata", ("tensorboard",)), ("damaged", (LOG_DIR,))):
        for part in parts:
            shutil.copytree(run / part, logdir / name / part)
    (logdir / "damaged" / LOG_DIR / "step_00000003.npz").write_bytes(b"PK\x03\x04 not whole")
    random_run(logdir / "p64", LINE, 64, steps=3)
    random_run(logdir / "p256", LINE, 256, steps=2)
    random_run(logdir / "chinese", CHINESE, None, steps=1)
    port, log = free_port(), logdir / "tensorboard.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tensorboard.main",
                "--logdir",
                str(logdir),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(base + "/data/plugins_listing", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        yield base, logdir, log
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture(scope="module")
def browser(server):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1180, "height": 820})
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    yield page
    context.close()
    assert errors == []  # no script error on any page


def shot(target, name: str) -> None:
    """docs/images/explorer-<name>.png when ATTNLAB_SCREENSHOTS names the folder; in 256 colours
    when it would be over 280 kB."""
    if SHOTS:
        from PIL import Image

        path = Path(SHOTS) / f"explorer-{name}.png"
        target.screenshot(path=str(path))
        if path.stat().st_size > 280_000:
            Image.open(path).convert("RGB").quantize(256).save(path, optimize=True)


def open_run(page, base: str, run: str):
    page.goto(f"{base}/data/plugin_entry.html?name=attention&run={run}")
    root = page.locator(".ax-root[data-ready='1']")
    root.wait_for(timeout=20000)
    return root


def move_slider(page, index: int, step: int) -> float:
    """Move the step slider to ``index`` and wait for ``step``'s maps: the milliseconds it took."""
    return page.evaluate(
        """async ([index, step]) => {
          const root = document.querySelector(".ax-root"), slider = document.querySelector(".ax-step");
          const start = performance.now();
          slider.value = index;
          slider.dispatchEvent(new Event("input"));
          while (root.dataset.step !== String(step) && !root.dataset.message) await new Promise(requestAnimationFrame);
          await new Promise(requestAnimationFrame);
          return performance.now() - start;
        }""",
        [index, step],
    )


def test_the_attention_tab_lists_the_runs(server, page):
    base, _, _ = server
    page.goto(base + "/#attention")
    frame = page.frame_locator("iframe")
    frame.locator(".ax-root[data-ready='1']").wait_for(timeout=30000)
    options = frame.locator(".ax-run option").all_inner_texts()
    assert [o.split()[0] for o in options] == ["chinese", "damaged", "nodata", "p256", "p64", "run"]
    assert "nodata  (no attention logged)" in options and "run  (3 steps)" in options
    assert page.locator("text=attention").first.is_visible()  # the tab in TensorBoard's bar
    shot(page, "tab")


def test_the_slider_changes_the_maps_and_a_hovered_cell_reads_the_logged_weight(server, page):
    base, logdir, _ = server
    root = open_run(page, base, "run")
    assert root.get_attribute("data-step") == "5"  # opens on the last step
    first = page.locator(".ax-map").first
    trained = first.evaluate("c => c.toDataURL()")
    move_slider(page, 0, 0)
    assert root.get_attribute("data-step") == "0" and page.locator(".ax-step-label").inner_text().startswith("0 ")
    assert first.evaluate("c => c.toDataURL()") != trained  # the untrained model's maps
    move_slider(page, 2, 5)

    page.locator(".ax-card[data-layer='0'][data-head='1'] .ax-map").click()  # enlarge head 0.1
    zoom = page.locator(".ax-zoom-canvas")
    cell = float(zoom.get_attribute("data-cell"))
    q, k = 9, 4
    box = zoom.bounding_box()
    page.mouse.move(box["x"] + (k + 0.5) * cell, box["y"] + (q + 0.5) * cell)
    tip = page.locator(".ax-tip")
    logged = read_step(logdir / "run" / LOG_DIR, 5)
    assert (tip.get_attribute("data-query"), tip.get_attribute("data-key")) == (str(q), str(k))
    assert float(tip.get_attribute("data-weight")) == float(logged.weights[0, 1, q, k])  # the float16, exactly
    assert tip.inner_text().startswith(f"query {q} ") and f"key {k} " in tip.inner_text()
    shot(page, "zoom")


def test_hovering_a_query_shades_every_key_by_the_logged_weights_of_each_ticked_head(server, page):
    base, logdir, _ = server
    open_run(page, base, "p64")
    page.locator(".ax-card[data-layer='2'][data-head='3'] input").check()  # a second head, its own colour
    assert page.locator(".ax-chip").all_inner_texts() == ["L0 H0", "L2 H3"]
    q = 40
    page.locator(f".ax-tok[data-i='{q}']").click()  # hover, and pin
    logged = read_step(logdir / "p64" / LOG_DIR, 500)
    for k in (0, 17, 39, q):
        shown = [float(w) for w in page.locator(f".ax-tok[data-i='{k}']").get_attribute("data-w").split(",")]
        assert shown == [float(logged.weights[0, 0, q, k]), float(logged.weights[2, 3, q, k])]
    assert page.locator(f".ax-tok[data-i='{q + 1}']").get_attribute("data-w") is None  # a later token: unshaded
    assert page.locator(".ax-tok").count() == 64 and "⇥" in page.locator(".ax-tokens").inner_text()
    page.locator(".ax-text").scroll_into_view_if_needed()
    shot(page, "text")
    page.locator(".ax-sort").select_option("prev_token")
    order = page.locator(".ax-card").evaluate_all("cs => cs.map(c => [+c.dataset.layer, +c.dataset.head])")
    prev = logged.scores["prev_token"]
    assert [prev[layer][head] for layer, head in order] == sorted((v for row in prev for v in row), reverse=True)
    page.locator(".ax-scale").select_option("sqrt")
    assert page.locator(".ax-scale-name").inner_text() == "attention weight, square-root scale"
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "sorted")


def test_a_256_token_probe_loads_and_changes_step_without_freezing(server, page):
    base, logdir, _ = server
    figures = {}
    for run in ("p64", "p256"):
        start = time.perf_counter()
        root = open_run(page, base, run)
        load = time.perf_counter() - start
        changes = [move_slider(page, i, s) for i, s in enumerate(logged_steps(logdir / run / LOG_DIR))]
        figures[run] = (load, float(root.get_attribute("data-load-ms")), changes)
        assert page.locator(".ax-tok").count() == int(run[1:]) and page.locator(".ax-map").count() == 16
    print(
        "explorer timings: "
        + "; ".join(
            f"{r}: load {lo:.2f} s (page {ms:.0f} ms), step change {max(c):.0f} ms"
            for r, (lo, ms, c) in figures.items()
        )
    )
    assert all(load < 10 and max(changes) < 2000 for load, _, changes in figures.values())
    page.locator(".ax-tok[data-i='255']").hover()
    assert page.locator(".ax-tok[data-w]").count() == 256  # every key of the last query
    move_slider(page, 1, 250)
    page.locator(".ax-scale").select_option("log")
    page.locator(".ax-card[data-layer='3'][data-head='2'] input").check()
    page.locator(".ax-tok[data-i='200']").click()
    assert page.locator(".ax-tok[data-w]").count() == 201
    page.set_viewport_size({"width": 1180, "height": 1000})
    page.locator(".ax-grid").evaluate("g => g.scrollTo(0, 0)")
    page.evaluate("window.scrollTo(0, 0)")
    shot(page, "long")


def test_a_chinese_probe_shows_its_characters_as_text(server, page):
    base, logdir, _ = server
    open_run(page, base, "chinese")
    logged = read_step(logdir / "chinese" / LOG_DIR, 0)
    shown = page.locator(".ax-tok").all_inner_texts()
    whole = [t for t in logged.tokens if "\ufffd" not in t]
    assert {"注意", "力", "机", "很", "我们"} & set(whole)  # cl100k has whole tokens for these
    for text, label in zip(logged.tokens, shown):
        expected = text.replace(" ", "·").replace("\n", "⏎") if "\ufffd" not in text else label
        assert label == expected
    drawn = page.evaluate(  # each glyph drawn differs from the box of a character no font has
        """(chars) => chars.map((c) => {
          const canvas = document.createElement("canvas"), ctx = canvas.getContext("2d");
          canvas.width = canvas.height = 40;
          ctx.font = getComputedStyle(document.querySelector(".ax-tok")).font;
          const ink = (t) => { ctx.clearRect(0, 0, 40, 40); ctx.fillText(t, 4, 30);
            return Array.from(ctx.getImageData(0, 0, 40, 40).data).join(); };
          return ink(c) !== ink("\\u0378") && ink(c) !== ink("");
        })""",
        list("注意力机制"),
    )
    assert all(drawn)
    shot(page, "chinese")


def test_a_run_without_attention_data_says_so(server, page):
    base, _, _ = server
    open_run(page, base, "nodata")
    message = page.locator(".ax-message")
    assert message.is_visible() and message.inner_text() == "no attention logged for this run"
    shot(page, "nodata")


def test_a_damaged_step_file_shows_a_message_and_the_server_stays_up(server, page):
    base, _, log = server
    root = open_run(page, base, "damaged")
    move_slider(page, 1, 3)
    text = page.locator(".ax-message").inner_text()
    assert text.startswith("cannot show step 3 of damaged: ") and "step_00000003.npz is damaged" in text
    move_slider(page, 2, 5)  # the other steps still show
    assert root.get_attribute("data-message") == "" and page.locator(".ax-map").count() == 2
    assert urllib.request.urlopen(base + "/data/plugin/attention/runs", timeout=5).status == 200
    assert "step_00000003.npz is damaged" in log.read_text()  # and the server's log says why


def test_the_html_export_works_offline_from_a_file_url(tiny_run, browser, tmp_path):
    from hydra import compose, initialize_config_dir

    from attnlab.tools.attend import attend

    run, _ = tiny_run
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("attend", overrides=[f"ckpt_path={run}", f"out_dir={tmp_path}"])
    paths = attend(cfg)
    html = tmp_path / "attention.html"
    assert html in paths and all(p.is_file() for p in paths)
    context = browser.new_context(viewport={"width": 1180, "height": 820})
    asked = []

    def offline(route):  # the page's own file, and nothing else: no network at all
        if route.request.url == html.as_uri():
            return route.continue_()
        asked.append(route.request.url)
        return route.abort()

    context.route("**/*", offline)
    page = context.new_page()
    errors = []
    page.on("pageerror", lambda err: errors.append(str(err)))
    page.goto(html.as_uri())
    page.locator(".ax-root[data-ready='1']").wait_for(timeout=20000)
    assert errors == [] and asked == []
    assert page.locator(".ax-map").count() == 2 and page.locator(".ax-message").is_hidden()
    page.locator(".ax-tok[data-i='5']").hover()
    assert page.locator(".ax-tok[data-w]").count() == 6
    shot(page, "export")
    context.close()
