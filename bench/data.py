"""Section 3: data — the default corpus's first tokenization (and cache write), the cached load,
and drawing one training batch (:meth:`attnlab.data.windows.RandomWindows.batch`)."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from attnlab.data.corpus import prepare_named_corpus, read_corpus
from attnlab.data.token_cache import load_or_build_tokens
from attnlab.data.tokenizer import build_base_tokenizer
from attnlab.data.windows import RandomWindows
from bench.common import ROOT, median, median_seconds

TOKENIZERS = {"cl100k corpus vocabulary": ("tiktoken", 16), "char": ("char", 12)}  # kind, batch size


def run(quick: bool = False) -> dict:
    source = ROOT / "data" / "trans_instance.txt" if quick else prepare_named_corpus("shakespeare", ROOT / "data")
    repeats = 1 if quick else 5
    context_length = 16 if quick else 64
    read_s = median_seconds(lambda: read_corpus(source), repeats)
    corpus = read_corpus(source)
    rows = []
    for name, (kind, batch_size) in TOKENIZERS.items():
        base = build_base_tokenizer(kind)
        base.encode("warm up")  # loads the BPE file (not part of tokenizing the corpus)
        first, cached = [], []
        for _ in range(repeats):
            cache_dir = Path(tempfile.mkdtemp())
            try:
                start = time.perf_counter()
                tokens = load_or_build_tokens(corpus, base, cache_dir)  # tokenize + write the cache
                first.append(time.perf_counter() - start)
                start = time.perf_counter()
                load_or_build_tokens(read_corpus(source), base, cache_dir)  # read the text, hash it, load the ids
                cached.append(time.perf_counter() - start)
            finally:
                shutil.rmtree(cache_dir)
        windows = RandomWindows(tokens.ids, context_length, batch_size, seed=0)
        k = iter(range(10**9))
        batch_s = median_seconds(lambda: windows.batch(next(k)), repeats, number=200)
        rows.append(
            {
                "tokenizer": name,
                "tokens": int(len(tokens.ids)),
                "vocabulary": int(len(tokens.vocab)),
                "first_tokenization_s": median(first),
                "cached_load_s": median(cached),
                "batch_size": batch_size,
                "context_length": context_length,
                "batch_us": 1e6 * batch_s,
            }
        )
        print(
            f"  data {name}: first {median(first):.3f} s, cached {median(cached):.3f} s, batch {1e6 * batch_s:.1f} us",
            flush=True,
        )
    return {
        "corpus": str(source.relative_to(ROOT)),
        "bytes": len(corpus.text.encode("utf-8")),
        "repeats": repeats,
        "read_s": read_s,
        "rows": rows,
    }


def table(result: dict, step_ms: dict[str, float] | None = None) -> str:
    """``step_ms``: Lightning's fp32 ms/step per tokenizer name (section 1), for the batch's share."""
    step_ms = step_ms or {}
    lines = [
        f"`{result['corpus']}` ({result['bytes'] / 1e6:.1f} MB of UTF-8), median of {result['repeats']} runs. First "
        "tokenization: encode every document, build the corpus vocabulary, write the token cache (a fresh cache "
        "folder each time). Cached load: read and hash the text again, find and check the cache "
        f"(reading the text alone: {result['read_s']:.3f} s). Batch: one training batch "
        "(`RandomWindows.batch`, median of 200 calls per run), and its share of the config's Lightning fp32 step "
        "(section 1).",
        "",
        "| tokenizer | tokens | vocabulary | first tokenization (s) | cached load (s) | batch | batch time (µs) | share of a step |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in result["rows"]:
        step = step_ms.get(r["tokenizer"])
        share = f"{100 * r['batch_us'] / (1e3 * step):.2f}%" if step else "n/a"
        lines.append(
            f"| {r['tokenizer']} | {r['tokens']:,} | {r['vocabulary']:,} | {r['first_tokenization_s']:.3f} | "
            f"{r['cached_load_s']:.3f} | {r['batch_size']}×{r['context_length']} | {r['batch_us']:.1f} | {share} |"
        )
    return "\n".join(lines)
