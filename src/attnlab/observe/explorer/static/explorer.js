// The attention explorer: every head of every layer at every logged step. One source for both
// of its pages: the TensorBoard tab (index.js, data from the plugin's routes) and the
// self-contained attention.html (attnlab.observe.explorer.page inlines this file and the data).
// A step's data is the binary of attnlab.observe.explorer.log.wire: a uint32 header length,
// a JSON header, float16 weights (L, nh, T, T).

const VIRIDIS = "44015444025645045745055946075a46085c460a5d460b5e470d60470e6147106347116447136548146748166848176948186a481a6c481b6d481c6e481d6f481f70482071482173482374482475482576482677482878482979472a7a472c7a472d7b472e7c472f7d46307e46327e46337f463480453581453781453882443983443a83443b84433d84433e85423f854240864241864142874144874045884046883f47883f48893e49893e4a893e4c8a3d4d8a3d4e8a3c4f8a3c508b3b518b3b528b3a538b3a548c39558c39568c38588c38598c375a8c375b8d365c8d365d8d355e8d355f8d34608d34618d33628d33638d32648e32658e31668e31678e31688e30698e306a8e2f6b8e2f6c8e2e6d8e2e6e8e2e6f8e2d708e2d718e2c718e2c728e2c738e2b748e2b758e2a768e2a778e2a788e29798e297a8e297b8e287c8e287d8e277e8e277f8e27808e26818e26828e26828e25838e25848e25858e24868e24878e23888e23898e238a8d228b8d228c8d228d8d218e8d218f8d21908d21918c20928c20928c20938c1f948c1f958b1f968b1f978b1f988b1f998a1f9a8a1e9b8a1e9c891e9d891f9e891f9f881fa0881fa1881fa1871fa28720a38620a48621a58521a68522a78522a88423a98324aa8325ab8225ac8226ad8127ad8128ae8029af7f2ab07f2cb17e2db27d2eb37c2fb47c31b57b32b67a34b67935b77937b87838b9773aba763bbb753dbc743fbc7340bd7242be7144bf7046c06f48c16e4ac16d4cc26c4ec36b50c46a52c56954c56856c66758c7655ac8645cc8635ec96260ca6063cb5f65cb5e67cc5c69cd5b6ccd5a6ece5870cf5773d05675d05477d1537ad1517cd2507fd34e81d34d84d44b86d54989d5488bd6468ed64590d74393d74195d84098d83e9bd93c9dd93ba0da39a2da37a5db36a8db34aadc32addc30b0dd2fb2dd2db5de2bb8de29bade28bddf26c0df25c2df23c5e021c8e020cae11fcde11dd0e11cd2e21bd5e21ad8e219dae319dde318dfe318e2e418e5e419e7e419eae51aece51befe51cf1e51df4e61ef6e620f8e621fbe723fde725";
const LUT = Uint8Array.from(VIRIDIS.match(/../g), (h) => parseInt(h, 16)); // 256 x RGB
const HEAD_COLOURS = ["#d62728", "#1f77b4", "#2ca02c", "#ff7f0e", "#9467bd", "#17becf", "#e377c2", "#8c564b"];
const LOG_FLOOR = 4; // the log scale spans 10^-4 .. 1
const MIN_LABEL_CELL = 9; // px per token of the enlarged map from which its axes carry the tokens

export const SCALES = {
  linear: { name: "linear scale", f: (v) => v, ticks: [0, 0.25, 0.5, 0.75, 1] },
  sqrt: { name: "square-root scale", f: (v) => Math.sqrt(Math.max(v, 0)), ticks: [0, 0.01, 0.1, 0.25, 0.5, 1] },
  log: {
    name: "log scale, 10\u207b\u2074 to 1",
    f: (v) => (v <= 10 ** -LOG_FLOOR ? 0 : (Math.log10(v) + LOG_FLOOR) / LOG_FLOOR),
    ticks: [1e-4, 1e-3, 1e-2, 0.1, 1],
  },
};

// ------------------------------------------------------------------------------------------
// Data
// ------------------------------------------------------------------------------------------

const F16 = (() => {
  const table = new Float32Array(65536);
  for (let i = 0; i < 65536; i++) {
    const e = (i >> 10) & 31, m = i & 1023;
    const v = e === 0 ? m * 2 ** -24 : e === 31 ? (m ? NaN : Infinity) : (1 + m / 1024) * 2 ** (e - 15);
    table[i] = i >> 15 ? -v : v;
  }
  return table;
})();

export function decodeStep(buffer) {
  const length = new DataView(buffer).getUint32(0, true);
  const header = JSON.parse(new TextDecoder().decode(new Uint8Array(buffer, 4, length)));
  const n = header.layers * header.heads * header.T * header.T;
  if (buffer.byteLength !== 4 + length + 2 * n) throw new Error("the step's data is cut short");
  const half = new Uint16Array(buffer, 4 + length, n);
  const weights = new Float32Array(n);
  for (let i = 0; i < n; i++) weights[i] = F16[half[i]];
  return { ...header, weights };
}

async function fetched(url, kind) {
  const response = await fetch(url);
  if (!response.ok) {
    let message = response.status + " " + response.statusText;
    try { message = (await response.json()).error || message; } catch (err) { /* not JSON */ }
    throw new Error(message);
  }
  return kind === "json" ? response.json() : response.arrayBuffer();
}

// The TensorBoard plugin's routes, relative to the page (plugin/attention/).
export function serverSource(base = ".") {
  const q = encodeURIComponent;
  return {
    runs: () => fetched(base + "/runs", "json"),
    steps: async (run) => (await fetched(base + "/steps?run=" + q(run), "json")).steps,
    step: async (run, step) => decodeStep(await fetched(base + "/step?run=" + q(run) + "&step=" + step, "bytes")),
  };
}

// Data inlined in the page: {run, steps: [{step, data: base64 of the wire bytes}]}.
export function embeddedSource(embedded) {
  const bytes = (b64) => Uint8Array.from(atob(b64), (c) => c.charCodeAt(0)).buffer;
  return {
    runs: async () => [{ run: embedded.run, steps: embedded.steps.length }],
    steps: async () => embedded.steps.map((s) => s.step),
    step: async (run, step) => decodeStep(bytes(embedded.steps.find((s) => s.step === step).data)),
  };
}

// ------------------------------------------------------------------------------------------
// Tokens
// ------------------------------------------------------------------------------------------

const WHITESPACE = { " ": "\u00b7", "\n": "\u23ce", "\t": "\u21e5", "\r": "\u21a4" };
export const TOKEN_LEGEND = [
  ["\u00b7", "space"], ["\u23ce", "line break"], ["\u21e5", "tab"], ["\u21a4", "carriage return"],
  ["#id", "part of a multi-byte character (the token's id)"], ["\u2205", "empty"],
];

// The token as shown: whitespace made visible; text the tokenizer split mid-character as #id.
export function tokenLabel(text, id) {
  if (text.includes("\ufffd")) return "#" + id;
  if (text === "") return "\u2205";
  return Array.from(text, (c) => WHITESPACE[c] || c).join("");
}

function tokenNode(text, id) {
  const span = document.createElement("span");
  if (text.includes("\ufffd") || text === "") {
    span.className = "ax-mark";
    span.textContent = tokenLabel(text, id);
    return span;
  }
  for (const c of Array.from(text)) {
    if (WHITESPACE[c]) {
      const mark = document.createElement("span");
      mark.className = "ax-mark";
      mark.textContent = WHITESPACE[c];
      span.append(mark);
    } else span.append(c);
  }
  return span;
}

// ------------------------------------------------------------------------------------------
// Drawing
// ------------------------------------------------------------------------------------------

function paint(canvas, weights, offset, T, f) {
  canvas.width = T;
  canvas.height = T;
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(T, T);
  const px = image.data;
  for (let q = 0; q < T; q++) {
    for (let k = 0; k < T; k++) {
      const p = 4 * (q * T + k);
      if (k > q) {
        px[p] = px[p + 1] = px[p + 2] = 255; // the masked future: white
      } else {
        const c = 3 * Math.min(255, Math.max(0, Math.round(255 * f(weights[offset + q * T + k]))));
        px[p] = LUT[c]; px[p + 1] = LUT[c + 1]; px[p + 2] = LUT[c + 2];
      }
      px[p + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
}

function paintRamp(canvas, scale) {
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  for (let x = 0; x < w; x++) {
    const c = 3 * Math.round((255 * x) / (w - 1));
    ctx.fillStyle = "rgb(" + LUT[c] + "," + LUT[c + 1] + "," + LUT[c + 2] + ")";
    ctx.fillRect(x, 0, 1, h);
  }
  return scale.ticks.map((v) => [v, scale.f(v)]);
}

function rgba(hex, alpha) {
  const n = parseInt(hex.slice(1), 16);
  return "rgba(" + (n >> 16) + "," + ((n >> 8) & 255) + "," + (n & 255) + "," + alpha.toFixed(3) + ")";
}

const fmt = (v) => (v === null || v === undefined ? "\u2013" : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(3));
const el = (tag, cls, text) => {
  const node = document.createElement(tag);
  if (cls) node.className = cls;
  if (text !== undefined) node.textContent = text;
  return node;
};

// ------------------------------------------------------------------------------------------
// The page
// ------------------------------------------------------------------------------------------

const LAYOUT = `
<div class="ax-bar">
  <label>run <select class="ax-run"></select></label>
  <label class="ax-stepbox">step <input type="range" class="ax-step" min="0" max="0" value="0">
    <output class="ax-step-label"></output></label>
  <label>scale <select class="ax-scale"></select></label>
  <label>sort heads by <select class="ax-sort"></select></label>
</div>
<div class="ax-message" hidden></div>
<div class="ax-body">
  <div class="ax-legend">
    <span class="ax-ramp"><canvas class="ax-ramp-canvas" width="240" height="12"></canvas>
      <span class="ax-ramp-ticks"></span><span class="ax-scale-name"></span></span>
    <span class="ax-token-legend"></span>
  </div>
  <div class="ax-main">
    <section class="ax-grid"></section>
    <div class="ax-side">
      <section class="ax-zoom">
        <h3 class="ax-zoom-title"></h3>
        <div class="ax-zoom-scroll"><div class="ax-zoom-grid"><span></span><div class="ax-xlabels"></div>
          <div class="ax-ylabels"></div><div class="ax-zoom-plot"><canvas class="ax-zoom-canvas"></canvas>
          <div class="ax-cell" hidden></div></div></div></div>
        <div class="ax-tip">hover a cell: query token, key token and weight</div>
      </section>
      <section class="ax-text">
        <h3>text view <span class="ax-chips"></span></h3>
        <p class="ax-help">Hover a token (click to pin it): every earlier token is shaded by the weight the
          ticked heads give it, one colour per head. Tick heads in the grid.</p>
        <div class="ax-tokens"></div>
      </section>
    </div>
  </div>
</div>`;

export async function mount(root, source) {
  root.classList.add("ax-root");
  root.innerHTML = LAYOUT;
  const $ = (cls) => root.querySelector("." + cls);
  const ui = {
    run: $("ax-run"), step: $("ax-step"), stepLabel: $("ax-step-label"), scale: $("ax-scale"), sort: $("ax-sort"),
    message: $("ax-message"), body: $("ax-body"), grid: $("ax-grid"), zoomTitle: $("ax-zoom-title"),
    zoom: $("ax-zoom-canvas"), tip: $("ax-tip"), tokens: $("ax-tokens"), chips: $("ax-chips"),
    ramp: $("ax-ramp-canvas"), ticks: $("ax-ramp-ticks"), scaleName: $("ax-scale-name"),
    xlabels: $("ax-xlabels"), ylabels: $("ax-ylabels"), cell: $("ax-cell"),
  };
  for (const key of Object.keys(SCALES)) ui.scale.append(new Option(SCALES[key].name, key));
  for (const [mark, what] of TOKEN_LEGEND) {
    const item = el("span", "ax-legend-item");
    item.append(el("span", "ax-mark", mark), " " + what);
    root.querySelector(".ax-token-legend").append(item);
  }
  const state = { run: null, steps: [], data: null, zoom: [0, 0], selected: [[0, 0]], query: null, pinned: false };
  const cache = new Map();

  const show = (message) => {
    ui.message.textContent = message || "";
    ui.message.hidden = !message;
    ui.body.hidden = Boolean(message);
    root.dataset.message = message || "";
  };
  const scale = () => SCALES[ui.scale.value];
  const offset = (l, h) => (l * state.data.heads + h) * state.data.T * state.data.T;
  const weight = (l, h, q, k) => state.data.weights[offset(l, h) + q * state.data.T + k];

  function drawLegend() {
    ui.ticks.textContent = "";
    for (const [v, x] of paintRamp(ui.ramp, scale())) {
      const tick = el("span", "ax-tick", v >= 0.01 || v === 0 ? String(v) : v.toExponential(0));
      tick.style.left = (100 * x).toFixed(1) + "%";
      ui.ticks.append(tick);
    }
    ui.scaleName.textContent = "attention weight, " + scale().name;
  }

  function headOrder() {
    const { layers, heads, scores } = state.data;
    const all = [];
    for (let l = 0; l < layers; l++) for (let h = 0; h < heads; h++) all.push([l, h]);
    const by = ui.sort.value;
    if (by && scores[by]) all.sort((a, b) => (scores[by][b[0]][b[1]] ?? -Infinity) - (scores[by][a[0]][a[1]] ?? -Infinity));
    return all;
  }

  function drawGrid() {
    const { T, scores } = state.data;
    const f = scale().f;
    ui.grid.textContent = "";
    const by = ui.sort.value;
    let row = null, lastLayer = -1;
    for (const [l, h] of headOrder()) {
      if (!by && l !== lastLayer) {
        ui.grid.append(el("div", "ax-layer-title", "layer " + l));
        row = el("div", "ax-row");
        ui.grid.append(row);
        lastLayer = l;
      } else if (by && !row) {
        row = el("div", "ax-row ax-sorted");
        ui.grid.append(row);
      }
      const card = el("div", "ax-card");
      card.dataset.layer = l;
      card.dataset.head = h;
      const selected = state.selected.findIndex(([a, b]) => a === l && b === h);
      if (state.zoom[0] === l && state.zoom[1] === h) card.classList.add("ax-zoomed");
      const canvas = el("canvas", "ax-map");
      paint(canvas, state.data.weights, offset(l, h), T, f);
      canvas.title = "click to enlarge";
      canvas.addEventListener("click", () => { state.zoom = [l, h]; drawGrid(); drawZoom(); });
      const title = el("label", "ax-card-title");
      const tick = el("input");
      tick.type = "checkbox";
      tick.checked = selected >= 0;
      tick.title = "show in the text view";
      tick.addEventListener("change", () => {
        if (tick.checked) state.selected.push([l, h]);
        else state.selected = state.selected.filter(([a, b]) => !(a === l && b === h));
        drawGrid();
        drawText();
      });
      const swatch = el("span", "ax-swatch");
      if (selected >= 0) swatch.style.background = HEAD_COLOURS[selected % HEAD_COLOURS.length];
      title.append(tick, swatch, " L" + l + " H" + h);
      card.append(canvas, title);
      const table = el("table", "ax-scores");
      for (const name of Object.keys(scores)) {
        const tr = el("tr", name === by ? "ax-sort-score" : "");
        tr.append(el("td", "", name), el("td", "ax-num", fmt(scores[name][l][h])));
        table.append(tr);
      }
      card.append(table);
      row.append(card);
    }
  }

  function drawZoom() {
    const { T, tokens, ids } = state.data;
    const [l, h] = state.zoom;
    const cell = Math.max(2, Math.min(22, Math.floor(440 / T)));
    paint(ui.zoom, state.data.weights, offset(l, h), T, scale().f);
    ui.zoom.style.width = ui.zoom.style.height = T * cell + "px";
    ui.zoom.dataset.cell = cell;
    for (const [box, axis] of [[ui.xlabels, "key"], [ui.ylabels, "query"]]) {
      box.textContent = "";
      if (cell < MIN_LABEL_CELL) continue; // beyond about 60 tokens: positions, in the hover line
      tokens.forEach((text, i) => {
        const label = tokenNode(text, ids[i]);
        label.className = "ax-axis-label";
        label.style.setProperty("--cell", cell + "px");
        label.title = axis + " " + i;
        box.append(label);
      });
    }
    ui.zoomTitle.textContent = "layer " + l + ", head " + h + " (rows: queries, columns: keys; " + T + " tokens)";
    ui.zoom.onmousemove = (event) => {
      const k = Math.floor(event.offsetX / cell), q = Math.floor(event.offsetY / cell);
      if (q < 0 || k < 0 || q >= T || k >= T) return;
      const w = k > q ? null : weight(l, h, q, k);
      ui.tip.textContent = "query " + q + " \u201c" + tokenLabel(tokens[q], ids[q]) + "\u201d \u2192 key " + k +
        " \u201c" + tokenLabel(tokens[k], ids[k]) + "\u201d: " + (w === null ? "masked (a later token)" : String(w));
      Object.assign(ui.tip.dataset, { query: q, key: k, weight: w === null ? "" : String(w) });
      Object.assign(ui.cell.style, { left: k * cell + "px", top: q * cell + "px", width: cell + "px", height: cell + "px" });
      ui.cell.hidden = false;
    };
    ui.zoom.onmouseleave = () => { ui.cell.hidden = true; };
  }

  function drawTokens() {
    const { tokens, ids } = state.data;
    ui.tokens.textContent = "";
    tokens.forEach((text, i) => {
      const node = tokenNode(text, ids[i]);
      node.classList.add("ax-tok");
      node.dataset.i = i;
      node.addEventListener("mouseenter", () => { if (!state.pinned) { state.query = i; drawText(); } });
      node.addEventListener("click", () => {
        state.pinned = !(state.pinned && state.query === i);
        state.query = i;
        drawText();
      });
      ui.tokens.append(node);
      if (text.endsWith("\n")) ui.tokens.append(el("br"));
    });
  }

  function drawText() {
    const f = scale().f;
    const heads = state.selected;
    ui.chips.textContent = "";
    heads.forEach(([l, h], n) => {
      const chip = el("span", "ax-chip", "L" + l + " H" + h);
      chip.style.borderColor = HEAD_COLOURS[n % HEAD_COLOURS.length];
      ui.chips.append(chip);
    });
    const q = state.query;
    for (const node of ui.tokens.querySelectorAll(".ax-tok")) {
      const k = Number(node.dataset.i);
      node.classList.toggle("ax-query", k === q);
      node.classList.toggle("ax-pinned", k === q && state.pinned);
      if (q === null || k > q || !heads.length) {
        node.style.background = "";
        node.removeAttribute("data-w");
        node.removeAttribute("title");
        continue;
      }
      const ws = heads.map(([l, h]) => weight(l, h, q, k));
      const stops = ws.map((w, n) => {
        const c = rgba(HEAD_COLOURS[n % HEAD_COLOURS.length], f(w));
        return c + " " + ((100 * n) / ws.length).toFixed(2) + "% " + ((100 * (n + 1)) / ws.length).toFixed(2) + "%";
      });
      node.style.background = "linear-gradient(to bottom, " + stops.join(", ") + ")";
      node.dataset.w = ws.map(String).join(",");
      node.title = heads.map(([l, h], n) => "L" + l + " H" + h + ": " + ws[n].toFixed(4)).join("\n");
    }
  }

  function drawAll() {
    drawLegend();
    drawGrid();
    drawZoom();
    drawTokens();
    drawText();
  }

  async function loadStep(index) {
    const started = performance.now();
    const step = state.steps[index];
    ui.stepLabel.textContent = step + "  (" + (index + 1) + " of " + state.steps.length + ")";
    const key = state.run + "\u0000" + step;
    try {
      if (!cache.has(key)) cache.set(key, await source.step(state.run, step));
    } catch (err) {
      show("cannot show step " + step + " of " + state.run + ": " + err.message);
      return;
    }
    if (state.steps[Number(ui.step.value)] !== step) return; // the slider moved on meanwhile
    const data = cache.get(key);
    const fresh = !state.data || state.data.T !== data.T || state.data.layers !== data.layers || state.data.heads !== data.heads;
    state.data = data;
    if (fresh) {
      state.zoom = [0, 0];
      state.selected = [[0, 0]];
      state.query = state.pinned ? Math.min(state.query ?? 0, data.T - 1) : null;
      const sorted = ui.sort.value;
      ui.sort.textContent = "";
      ui.sort.append(new Option("layer, then head", ""));
      for (const name of Object.keys(data.scores)) ui.sort.append(new Option(name + " (highest first)", name));
      if (sorted && data.scores[sorted]) ui.sort.value = sorted;
    }
    show("");
    drawAll();
    root.dataset.step = step;
    root.dataset.stepMs = (performance.now() - started).toFixed(1);
  }

  async function loadRun(run) {
    state.run = run;
    state.data = null;
    try {
      state.steps = await source.steps(run);
    } catch (err) {
      show("cannot read the attention of " + run + ": " + err.message);
      return;
    }
    if (!state.steps.length) {
      ui.step.max = 0;
      ui.stepLabel.textContent = "";
      show("no attention logged for this run");
      return;
    }
    ui.step.max = state.steps.length - 1;
    ui.step.value = state.steps.length - 1;
    await loadStep(state.steps.length - 1);
  }

  ui.step.addEventListener("input", () => loadStep(Number(ui.step.value)));
  ui.scale.addEventListener("change", () => { if (state.data) drawAll(); });
  ui.sort.addEventListener("change", () => { if (state.data) drawGrid(); });
  ui.run.addEventListener("change", () => loadRun(ui.run.value));

  let runs;
  try {
    runs = await source.runs();
  } catch (err) {
    show("cannot list the runs: " + err.message);
    return;
  }
  const count = (n) => (n === 1 ? "  (1 step)" : n ? "  (" + n + " steps)" : "  (no attention logged)");
  for (const r of runs) ui.run.append(new Option(r.run + count(r.steps), r.run));
  ui.run.disabled = runs.length < 2;
  if (!runs.length) {
    show("no runs in this log folder");
  } else {
    const asked = new URLSearchParams(location.search).get("run"); // plugin_entry.html?name=attention&run=...
    const first = runs.find((r) => r.run === asked) || runs.find((r) => r.steps) || runs[0];
    ui.run.value = first.run;
    await loadRun(first.run);
  }
  root.dataset.loadMs = performance.now().toFixed(1);
  root.dataset.ready = "1";
}
