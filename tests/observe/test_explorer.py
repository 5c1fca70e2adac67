"""The explorer's side data (what a run logs in attention_log/), its TensorBoard plugin's routes,
the self-contained page, show_attention, and the CJK font of the PNG maps. The browser checks:
test_explorer_browser.py."""

from __future__ import annotations

import base64
import json
import re
import struct
import sys
import types

import numpy as np
import pytest
import torch
from werkzeug.test import Client

from attnlab.errors import ConfigError
from attnlab.observe.explorer.log import (
    LOG_DIR,
    AttentionLogError,
    Step,
    logged_steps,
    read_step,
    scores_file,
    step_file,
    wire,
    write_attention,
    write_scores,
)
from attnlab.observe.explorer.page import STATIC, explorer_html
from attnlab.observe.explorer.plugin import AttentionPlugin
from attnlab.observe.heads import SCORES
from attnlab.observe.probe import probe_attention
from attnlab.runs.checkpoint import load_model


def unwire(data: bytes) -> tuple[dict, np.ndarray]:
    """The header and weights of :func:`wire`'s bytes, read as explorer.js reads them."""
    (length,) = struct.unpack("<I", data[:4])
    assert length % 2 == 0  # the float16 weights start at an even offset
    header = json.loads(data[4 : 4 + length])
    shape = (header["layers"], header["heads"], header["T"], header["T"])
    return header, np.frombuffer(data[4 + length :], dtype="<f2").reshape(shape)


def random_step(step=7, L=2, nh=3, T=5, seed=0) -> Step:
    g = np.random.default_rng(seed)
    w = np.tril(g.random((L, nh, T, T))) + np.eye(T)  # (L, nh, T, T), causal
    w /= w.sum(-1, keepdims=True)
    tokens = ["To", " be", "\n", "中", "\ufffd"][:T]
    return Step(step, tokens, list(range(T)), w.astype(np.float16))


def test_a_step_round_trips_through_the_side_files_and_the_wire(tmp_path):
    s = random_step()
    write_attention(tmp_path, s.step, s.tokens, s.ids, list(s.weights))
    write_scores(
        tmp_path, s.step, {"induction": np.full((2, 3), 0.5), "entropy": np.array([[1, np.nan, 2]] * 2)}, -0.25
    )
    write_attention(tmp_path, 0, s.tokens, s.ids, list(s.weights))
    assert logged_steps(tmp_path) == [0, 7] and logged_steps(tmp_path / "none") == []
    back = read_step(tmp_path, 7)
    assert back.tokens == s.tokens and back.ids == s.ids and np.array_equal(back.weights, s.weights)
    assert back.scores["induction"] == [[0.5] * 3] * 2 and back.scores["entropy"][0] == [1.0, None, 2.0]
    assert back.in_context == -0.25 and read_step(tmp_path, 0).scores is None  # heads wrote step 7 only

    header, weights = unwire(wire(back))
    assert header["tokens"] == s.tokens and header["step"] == 7 and (header["layers"], header["heads"]) == (2, 3)
    assert np.array_equal(weights, s.weights)
    with np.load(step_file(tmp_path, 7), allow_pickle=False) as data:  # plain numpy, no pickle
        assert data["weights"].dtype == np.float16 and data["tokens"].tolist() == s.tokens


def test_damaged_side_files_fail_in_one_line_naming_them(tmp_path):
    s = random_step()
    path = write_attention(tmp_path, 3, s.tokens, s.ids, list(s.weights))
    path.write_bytes(path.read_bytes()[:100])  # cut short
    with pytest.raises(AttentionLogError, match=r"step_00000003\.npz is damaged \(") as err:
        read_step(tmp_path, 3)
    assert "\n" not in str(err.value)
    step_file(tmp_path, 4).write_bytes(b"not a zip")
    with pytest.raises(AttentionLogError, match="step_00000004.npz is damaged"):
        read_step(tmp_path, 4)
    write_attention(tmp_path, 5, s.tokens, s.ids, list(s.weights))
    scores_file(tmp_path, 5).write_text("{")
    with pytest.raises(AttentionLogError, match="heads_00000005.json is damaged"):
        read_step(tmp_path, 5)


def test_a_run_logs_every_heads_weights_and_scores_at_step_0_and_each_validation(tiny_run):
    run, events = tiny_run
    log_dir = run / LOG_DIR
    assert logged_steps(log_dir) == [0, 3, 5]  # the untrained model, then validations after steps 4 and 6
    model, tokenizer = load_model(run / "checkpoints" / "last.ckpt")
    last = read_step(log_dir, 5)
    ids = torch.tensor(last.ids)
    expected = torch.stack(probe_attention(model, ids)).numpy()  # (L, nh, T, T)
    assert last.weights.shape == expected.shape and np.abs(last.weights - expected).max() < 1e-3  # float16
    assert last.tokens == [tokenizer.decode([i]) for i in last.ids]
    assert not np.array_equal(read_step(log_dir, 0).weights, last.weights)  # trained in between
    assert set(last.scores) == set(SCORES)
    scalars = {e.step: e.value for e in events.Scalars("heads/induction/layer_0/head_1")}
    assert last.scores["induction"][0][1] == pytest.approx(scalars[5], abs=1e-6)  # the heads callback's figures
    assert read_step(log_dir, 0).scores is not None  # measured on the untrained model too
    sizes = [p.stat().st_size for p in log_dir.iterdir()]
    assert max(sizes) < 4000  # 1 layer x 2 heads x 16 tokens, compressed


def plugin_client(logdir) -> Client:
    plugin = AttentionPlugin(types.SimpleNamespace(logdir=str(logdir), data_provider=None))
    apps = plugin.get_plugin_apps()

    def app(environ, start_response):
        return apps[environ["PATH_INFO"]](environ, start_response)

    return Client(app)


def test_plugin_routes_list_runs_steps_and_answer_bad_input_with_one_line(tmp_path, caplog):
    s = random_step()
    write_attention(tmp_path / "a" / LOG_DIR, 7, s.tokens, s.ids, list(s.weights))
    damaged = write_attention(tmp_path / "b" / LOG_DIR, 2, s.tokens, s.ids, list(s.weights))
    damaged.write_bytes(b"PK\x03\x04 cut")
    client = plugin_client(tmp_path)
    assert client.get("/runs").json == [{"run": "a", "steps": 1}, {"run": "b", "steps": 1}]
    assert client.get("/steps?run=a").json == {"steps": [7]}
    header, weights = unwire(client.get("/step?run=a&step=7").data)
    assert header["tokens"] == s.tokens and np.array_equal(weights, s.weights)
    answer = client.get("/step?run=b&step=2")
    assert answer.status_code == 422 and "step_00000002.npz is damaged" in answer.json["error"]
    assert "step_00000002.npz is damaged" in caplog.text  # the server's log says it too
    assert client.get("/step?run=a&step=8").status_code == 404
    assert client.get("/step?run=../..&step=7").status_code == 404  # only the runs listed
    assert client.get("/step?run=a&step=x").json == {"error": "step='x' is not a number"}
    assert client.get("/runs").status_code == 200  # still serving
    for name in ("index.js", "explorer.js", "explorer.css"):
        assert client.get(f"/{name}").data == (STATIC / name).read_bytes()


def test_the_page_is_self_contained_and_carries_the_plugins_frontend():
    page = explorer_html([random_step(3), random_step(9, seed=1)], "run </script> x")
    assert (STATIC / "explorer.js").read_text(encoding="utf-8") in page  # the plugin's code, as is
    assert (STATIC / "explorer.css").read_text(encoding="utf-8") in page
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page) and "import " not in page
    assert page.count("</script>") == 2  # the title's </script> is escaped in the data
    data = json.loads(re.search(r'id="attention-data">(.*?)</script>', page, re.S).group(1))
    assert [s["step"] for s in data["steps"]] == [3, 9] and data["run"] == "run </script> x"
    _, weights = unwire(base64.b64decode(data["steps"][1]["data"]))
    assert np.array_equal(weights, random_step(9, seed=1).weights)


def test_show_attention_is_an_iframe_of_the_page_and_needs_ipython_only_when_called(tiny_run, monkeypatch):
    import attnlab

    run, _ = tiny_run
    monkeypatch.setitem(sys.modules, "IPython", None)  # not installed
    with pytest.raises(
        ConfigError, match=r"^show_attention displays in Jupyter and needs IPython; pip install ipython$"
    ):
        attnlab.show_attention(run)
    display = types.ModuleType("IPython.display")
    display.HTML = lambda markup: ("HTML", markup)
    monkeypatch.setitem(sys.modules, "IPython", types.ModuleType("IPython"))
    monkeypatch.setitem(sys.modules, "IPython.display", display)
    kind, markup = attnlab.show_attention(run, height=500)
    assert kind == "HTML" and markup.startswith('<iframe srcdoc="&lt;!DOCTYPE html&gt;') and "height: 500px" in markup
    assert "<script" not in markup and "mount(document.getElementById(&quot;explorer&quot;)" in markup


def test_the_png_maps_draw_chinese_with_the_packaged_noto_font():
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    from attnlab.data.tokenizer import TiktokenTokenizer
    from attnlab.observe.attention_maps import CJK_FAMILY, _fonts, token_labels

    families, covered = _fonts()
    assert families == ("DejaVu Sans", CJK_FAMILY)
    path = font_manager.findfont(font_manager.FontProperties(family=CJK_FAMILY), fallback_to_default=False)
    assert "noto_cjk_sans_otc" in path
    font = FT2Font(path)
    text = "注意力机制很有趣"  # each character a glyph of the font, none the empty box
    assert all(font.get_char_index(ord(c)) != 0 and ord(c) in covered for c in text)
    tok = TiktokenTokenizer()
    ids = [i for i in tok.encode(text) if "\ufffd" not in tok.decode([i])]
    labels, note = token_labels(tok, ids)
    assert note is None and "".join(labels) == "".join(tok.decode([i]) for i in ids)  # no #id: drawn as text
