"""The "attention" tab of TensorBoard: a dynamic plugin (pyproject.toml's ``tensorboard_plugins``
entry point), so it appears wherever attnlab is installed.

Routes, under ``/data/plugin/attention/``:

* ``index.js``, ``explorer.js``, ``explorer.css``: the frontend (static/), nothing from the network;
* ``runs``: ``[{"run", "steps"}]``, every run TensorBoard lists and every run folder under the
  logdir with an ``attention_log/``, and how many steps each logged (0: none);
* ``steps?run=``: ``{"steps": [...]}``;
* ``step?run=&step=``: one step in the compact binary of :func:`attnlab.observe.explorer.log.wire`.

A bad request or a damaged file answers ``{"error": "<one line>"}`` (status 400, 404 or 422) and
logs that line; the server goes on.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

from tensorboard import plugin_util
from tensorboard.backend import http_util
from tensorboard.plugins import base_plugin
from werkzeug import wrappers

from attnlab.observe.explorer.log import LOG_DIR, AttentionLogError, logged_steps, read_step, wire
from attnlab.runs import layout

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("static")
ASSETS = {"index.js": "text/javascript", "explorer.js": "text/javascript", "explorer.css": "text/css"}
_SKIP = {layout.CHECKPOINT_DIR, LOG_DIR, layout.HYDRA_DIR, layout.TENSORBOARD_DIR, layout.ATTENTION_DIR}


def _json(request, body, code: int = 200):
    return http_util.Respond(request, json.dumps(body), "application/json", code=code)


def _error(request, message: str, code: int):
    log.error("attention plugin: %s", message)
    return _json(request, {"error": message}, code)


class AttentionPlugin(base_plugin.TBPlugin):
    plugin_name = "attention"

    def __init__(self, context: base_plugin.TBContext):
        self.logdir = Path(context.logdir or ".")
        self.data_provider = context.data_provider

    def get_plugin_apps(self):
        apps = {f"/{name}": self._asset(name) for name in ASSETS}
        return apps | {"/runs": self._serve_runs, "/steps": self._serve_steps, "/step": self._serve_step}

    def is_active(self) -> bool:
        return True  # the tab is there wherever attnlab is installed; a run without data says so

    def frontend_metadata(self):
        return base_plugin.FrontendMetadata(es_module_path="/index.js", tab_name="attention", disable_reload=True)

    # ---------------------------------------------------------------------------------------
    def _asset(self, name: str):
        @wrappers.Request.application
        def serve(request):
            return http_util.Respond(request, (STATIC / name).read_bytes(), ASSETS[name])

        return serve

    def run_folders(self, request) -> dict[str, Path]:
        """``{name: run folder}``: the folder of each run TensorBoard lists (its events' folder, or
        the folder above when that is a run's ``tensorboard/``), and each folder under the logdir
        holding an ``attention_log/``. Names are paths relative to the logdir."""
        folders: list[Path] = []
        if self.data_provider is not None:
            ctx, experiment = plugin_util.context(request.environ), plugin_util.experiment_id(request.environ)
            for run in self.data_provider.list_runs(ctx, experiment_id=experiment):
                events = self.logdir / run.run_name
                folders.append(events.parent if events.name == layout.TENSORBOARD_DIR else events)
        for top, dirs, _ in os.walk(self.logdir):
            if LOG_DIR in dirs:
                folders.append(Path(top))
            dirs[:] = [d for d in dirs if d not in _SKIP and not d.startswith(".")]
        named = {}
        for folder in folders:
            rel = os.path.relpath(folder, self.logdir)
            if not rel.startswith(".."):
                named[Path(rel).as_posix()] = folder
        return dict(sorted(named.items()))

    def _folder(self, request) -> Path | None:
        return self.run_folders(request).get(request.args.get("run", ""))

    @wrappers.Request.application
    def _serve_runs(self, request):
        runs = [{"run": name, "steps": len(logged_steps(f / LOG_DIR))} for name, f in self.run_folders(request).items()]
        return _json(request, runs)

    @wrappers.Request.application
    def _serve_steps(self, request):
        folder = self._folder(request)
        if folder is None:
            return _error(request, f"no run {request.args.get('run')!r} in {self.logdir}", 404)
        return _json(request, {"steps": logged_steps(folder / LOG_DIR)})

    @wrappers.Request.application
    def _serve_step(self, request):
        folder = self._folder(request)
        if folder is None:
            return _error(request, f"no run {request.args.get('run')!r} in {self.logdir}", 404)
        try:
            step = int(request.args.get("step", ""))
        except ValueError:
            return _error(request, f"step={request.args.get('step')!r} is not a number", 400)
        if step not in logged_steps(folder / LOG_DIR):
            return _error(request, f"no attention logged at step {step} of {request.args['run']}", 404)
        try:
            data = wire(read_step(folder / LOG_DIR, step))
        except AttentionLogError as err:
            return _error(request, str(err), 422)
        return http_util.Respond(request, data, "application/octet-stream")
