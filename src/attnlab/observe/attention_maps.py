"""What each head attends to: attention weights of a probe text, drawn as T x T heatmaps.

For every layer, :func:`attention_images` draws one image with a grid of all heads and one image of
the mean over heads. Rows are queries (the token doing the looking), columns are keys (the tokens
looked at); cells above the diagonal are the masked future and are left empty (white). Every
image shares one colour scale, 0 to 1, so images from different steps and layers compare
directly: linear by default, or ``scale="sqrt"`` (``callbacks.attention.scale=sqrt``), a
square-root ramp that keeps small weights visible; the colour bar names the scale. Up to
:data:`MAX_LABELLED_TOKENS` tokens the axes are labelled with the tokens; beyond, with their
positions, and a key below the maps lists ``position: token``.

The weights come from the model's ``explicit`` attention path (the seed's math, which can return
them) on the trained parameters, whatever path training uses.
"""

from __future__ import annotations

import math
from functools import cache
from pathlib import Path

import numpy as np
import torch

from attnlab.data.tokenizer import Tokenizer
from attnlab.model import GPT
from attnlab.observe.probe import probe_attention
from attnlab.runs.atomic import atomic_write

MAX_LABELLED_TOKENS = 32  # token labels on the axes up to this many tokens; beyond, positions and a key
SCALES = ("linear", "sqrt")  # the colour ramp of the weights, 0 to 1
_BASE_FONT = "DejaVu Sans"  # matplotlib's own font: Latin, Greek, Cyrillic, arrows, no CJK


# --------------------------------------------------------------------------------------------
# Token labels (and fonts that can draw them)
# --------------------------------------------------------------------------------------------


CJK_FAMILY = "Noto Sans CJK SC"  # a family of the noto-cjk-sans-otc package (a dependency): Simplified Chinese first


def _cjk_package_font() -> str | None:
    """The file of the CJK font package, ``noto-cjk-sans-otc`` (Noto Sans CJK Regular, every
    CJK script), added to matplotlib's fonts; None when it is not installed."""
    try:
        import noto_cjk_sans_otc
    except ImportError:
        return None
    from matplotlib import font_manager

    path = str(noto_cjk_sans_otc.FONT_PATH)
    font_manager.fontManager.addfont(path)  # every face of the collection: JP, KR, SC, TC, HK
    return path


@cache
def _fonts() -> tuple[tuple[str, ...], frozenset[int]]:
    """Font families to draw labels with (matplotlib falls back glyph by glyph along the list),
    and the set of code points they cover between them: matplotlib's own font, then Noto Sans CJK
    from the ``noto-cjk-sans-otc`` package, or else a CJK-capable font installed on the system
    (Noto Sans CJK, Source Han Sans, WenQuanYi, Droid Sans Fallback, ...)."""
    from matplotlib import font_manager
    from matplotlib.ft2font import FT2Font

    families, covered = [_BASE_FONT], set()
    covered |= set(FT2Font(font_manager.findfont(_BASE_FONT)).get_charmap())
    package = _cjk_package_font()
    if package is not None:
        return (_BASE_FONT, CJK_FAMILY), frozenset(covered | set(FT2Font(package).get_charmap()))
    for entry in sorted(font_manager.fontManager.ttflist, key=lambda f: f.name):
        if entry.name in families or entry.name.startswith("Last Resort"):  # placeholder boxes, not glyphs
            continue
        try:
            charmap = FT2Font(entry.fname).get_charmap()
        except Exception:  # an unreadable font file is just not used
            continue
        if ord("中") in charmap and ord("あ") in charmap:
            families.append(entry.name)
            covered |= set(charmap)
            break
    return tuple(families), frozenset(covered)


def visible_whitespace(piece: str) -> str:
    """Whitespace made visible, so ' the' and 'the' differ on an axis."""
    return piece.replace(" ", "·").replace("\n", "↵").replace("\t", "→").replace("\r", "")


def token_labels(tokenizer: Tokenizer, ids: list[int]) -> tuple[list[str], str | None]:
    """One label per token (its decoded text), and a note when some had to be shown as ``#id``:
    a token that is part of a multi-byte character, or text no installed font can draw."""
    _, covered = _fonts()
    labels, as_ids, no_font = [], 0, set()
    for i in ids:
        piece = tokenizer.decode([i])
        missing = {c for c in piece if ord(c) not in covered and not c.isspace()}
        if "\ufffd" in piece or missing:
            labels.append(f"#{i}")
            as_ids += 1
            no_font |= missing - {"\ufffd"}
        else:
            labels.append(visible_whitespace(piece) or "∅")
    note = None
    if as_ids:
        note = f"{as_ids} token(s) labelled #id"
        if no_font:
            note += " (no installed font has their glyphs; install a CJK font such as fonts-noto-cjk)"
        else:
            note += " (partial UTF-8 characters)"
    return labels, note


def token_key(labels: list[str], width: int) -> list[str]:
    """The key of a map whose axes show positions: ``"0: To   1: ·be   ..."`` in lines of at most
    ``width`` characters (a longer single entry gets a line of its own)."""
    lines, line = [], ""
    for i, label in enumerate(labels):
        entry = f"{i}: {label}"
        if line and len(line) + 3 + len(entry) > width:
            lines.append(line)
            line = ""
        line = f"{line}   {entry}" if line else entry
    return lines + ([line] if line else [])


# --------------------------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------------------------

_KEY_LINE = 0.15  # inches per line of the token key (7 pt)
_KEY_CHAR = 0.06  # inches per character of the key, about (DejaVu Sans at 7 pt)


def draw_maps(
    panels: list[tuple[str, np.ndarray]],
    labels: list[str] | None,
    title: str,
    note: str | None,
    key: list[str] | None = None,
    scale: str = "linear",
    key_labels: list[str] | None = None,
    causal: bool = True,
) -> np.ndarray:
    """Heatmaps (Tq, Tk) in a grid, one colour bar; ``labels`` on the axes, or positions there and
    ``key`` (the tokens) below the maps. Returns the image as (H, W, 3) uint8.

    Self-attention maps are square and ``labels`` name both axes; a cross-attention map (queries
    of one sequence, keys of another) gives the keys' names as ``key_labels``. ``causal``: the
    cells above the diagonal are the masked future, left empty (white).

    The layout is computed in inches here (no automatic layout engine: it would cost more than
    the drawing), so images of one run have the same size at every step.
    """
    from matplotlib import colormaps, colors
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    families, _ = _fonts()
    Tq, Tk = panels[0][1].shape
    key_labels = key_labels if key_labels is not None else labels
    cols = math.ceil(math.sqrt(len(panels)))
    rows = math.ceil(len(panels) / cols)
    side = max(2.4, 0.17 * max(Tq, Tk)) if labels else 2.4  # inches of heatmap per panel, the longer axis
    side_w, side_h = side * Tk / max(Tq, Tk), side * Tq / max(Tq, Tk)  # square cells
    left, bottom = (1.0, 1.0) if labels else (0.55, 0.5)  # room for tick labels and axis names
    top, gap, bar = 0.3, 0.2, 1.0  # panel title, space between panels, colour bar and its label
    head = 0.5 + (0.2 if note else 0.0)  # figure title
    cell_w, cell_h = left + side_w + gap, top + side_h + bottom
    width = cols * cell_w + bar
    key_lines = token_key(key, int((width - 0.3) / _KEY_CHAR)) if key else []
    foot = (len(key_lines) * _KEY_LINE + 0.2) if key_lines else 0.0  # the key, below the maps
    height = rows * cell_h + head + foot
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    cmap = colormaps["viridis"].with_extremes(bad="white")  # masked cells: visibly empty
    if scale not in SCALES:
        raise ValueError(f"scale={scale!r}: one of {', '.join(SCALES)}")
    norm = colors.PowerNorm(gamma=0.5, vmin=0.0, vmax=1.0) if scale == "sqrt" else colors.Normalize(0.0, 1.0)
    # above the diagonal: keys after the query (causal); nothing is hidden otherwise
    hidden = np.triu(np.ones((Tq, Tk), dtype=bool), k=1) if causal else np.zeros((Tq, Tk), dtype=bool)
    image = None
    for n, (name, weights) in enumerate(panels):
        r, c = divmod(n, cols)
        x0 = c * cell_w + left
        y0 = height - head - r * cell_h - top - side_h
        ax = fig.add_axes((x0 / width, y0 / height, side_w / width, side_h / height))
        shown = np.ma.masked_array(weights, mask=hidden)  # (Tq, Tk)
        image = ax.imshow(shown, cmap=cmap, norm=norm, interpolation="nearest", aspect="auto")
        ax.set_title(name, fontsize=9)
        if labels:
            ax.set_xticks(range(Tk), key_labels, rotation=90, fontsize=7, fontfamily=list(families))
            ax.set_yticks(range(Tq), labels, fontsize=7, fontfamily=list(families))
        else:
            ax.tick_params(labelsize=7)
        ax.set_xlabel("key" if labels or not key else "key (position)", fontsize=8)
        ax.set_ylabel("query" if labels or not key else "query (position)", fontsize=8)
    bar_h = min(height - head - foot - 0.6, 3.0)
    bar_ax = fig.add_axes(
        ((width - bar + 0.15) / width, (height - head - 0.3 - bar_h) / height, 0.18 / width, bar_h / height)
    )
    fig.colorbar(image, cax=bar_ax, label=f"attention weight, {scale} scale")
    for n, line in enumerate(key_lines):
        y = (foot - 0.1 - (n + 1) * _KEY_LINE) / height
        fig.text(0.15 / width, y, line, fontsize=7, fontfamily=list(families), va="bottom")
    fig.suptitle(title + (f"\n{note}" if note else ""), fontsize=10, y=1 - 0.08 / height, va="top")
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()  # (H, W, 3) uint8


def attention_images(
    model: GPT, tokenizer: Tokenizer, ids: torch.Tensor, caption: str = "", scale: str = "linear"
) -> dict[str, np.ndarray]:
    """``{"attention/layer_{i}": heads grid, "attention/layer_{i}_mean": head mean}`` as (H, W, 3)
    uint8, on a ``scale`` (:data:`SCALES`) colour ramp."""
    weights = probe_attention(model, ids)  # num_layers x (nh, T, T)
    T = ids.numel()
    labels, note = token_labels(tokenizer, ids.tolist())
    labels, key = (labels, None) if T <= MAX_LABELLED_TOKENS else (None, labels)  # beyond: positions and a key
    suffix = f" — {caption}" if caption else ""
    images = {}
    for i, w in enumerate(weights):
        heads = [(f"head {h}", w[h].numpy()) for h in range(w.size(0))]
        images[f"attention/layer_{i}"] = draw_maps(heads, labels, f"layer {i}: every head{suffix}", note, key, scale)
        mean = [("mean over heads", w.mean(dim=0).numpy())]  # (T, T)
        images[f"attention/layer_{i}_mean"] = draw_maps(mean, labels, f"layer {i}: mean{suffix}", note, key, scale)
    return images


def save_png(image: np.ndarray, path: Path) -> Path:
    """Write an (H, W, 3) uint8 image as PNG (atomically)."""
    from PIL import Image

    with atomic_write(path) as f:
        Image.fromarray(image).save(f, format="PNG")
    return path


def write_attention_pngs(
    model: GPT, tokenizer: Tokenizer, ids: torch.Tensor, out_dir: Path, caption: str = "", scale: str = "linear"
) -> list[Path]:
    """Render every layer's maps for ``ids`` (T,) into ``out_dir/layer_{i}.png`` and ``layer_{i}_mean.png``."""
    images = attention_images(model, tokenizer, ids, caption, scale)
    return [save_png(image, out_dir / f"{tag.removeprefix('attention/')}.png") for tag, image in images.items()]
