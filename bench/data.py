"""Section 3: data — the default corpus's first tokenization (and cache write), the cached start,
and drawing one training batch (:meth:`attnlab.data.windows.RandomWindows.batch`); then the data
path at scale, on corpora generated from shuffled Shakespeare lines (many files of 1 MB and one
of a fifth of the corpus) of the sizes ``ATTNLAB_BENCH_DATA_MB`` lists (``50`` by default,
``ATTNLAB_BENCH_DATA_MB=50,500,2000`` for the big ones): tokenization MB/s against tiktoken's own
``encode_ordinary_batch`` on the same cores, the peak resident memory of the build (all its
processes), the time to start with the cached corpus, and a training process's resident memory
against one on a 5 MB corpus. Each is measured in a fresh process (in this one with ``--quick``)."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from attnlab.data.corpus import open_corpus, prepare_named_corpus, read_corpus
from attnlab.data.pool import cores
from attnlab.data.token_cache import load_or_build_tokens
from attnlab.data.tokenizer import build_base_tokenizer
from attnlab.data.windows import RandomWindows
from bench import fresh
from bench.common import ROOT, _status_kib, median, median_seconds

TOKENIZERS = {"cl100k corpus vocabulary": ("tiktoken", 16), "char": ("char", 12)}  # kind, batch size
SIZES_ENV = "ATTNLAB_BENCH_DATA_MB"
SMALL_MB = 5  # the corpus a training process's memory is compared with
BASELINE_MB = 200  # tiktoken's batch holds the text and its ids as Python lists: measured on at most this much
FILE_MB = 1


def run(quick: bool = False) -> dict:
    source = ROOT / "data" / "trans_instance.txt" if quick else prepare_named_corpus("shakespeare", ROOT / "data")
    sizes = [1] if quick else [int(mb) for mb in os.environ.get(SIZES_ENV, "50").split(",")]
    return {**shakespeare(source, quick), "scale": [scale(source, mb, quick) for mb in sizes]}


def shakespeare(source: Path, quick: bool) -> dict:
    repeats = 1 if quick else 5
    context_length = 16 if quick else 64
    read_s = median_seconds(lambda: read_corpus(source), repeats)
    corpus = open_corpus(source)
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
                load_or_build_tokens(open_corpus(source), base, cache_dir)  # list and stat the files, check the cache
                cached.append(time.perf_counter() - start)
            finally:
                shutil.rmtree(cache_dir)
        windows = RandomWindows(np.array(tokens.ids), context_length, batch_size, seed=0)
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
        "bytes": corpus.size(),
        "repeats": repeats,
        "read_s": read_s,
        "rows": rows,
    }


# --------------------------------------------------------------------------------------------
# At scale
# --------------------------------------------------------------------------------------------


def generate_corpus(source: Path, root: Path, mb: float, seed: int = 0) -> tuple[int, int]:
    """Shuffled lines of ``source`` into ``root``: files of :data:`FILE_MB` and one of a fifth of
    the corpus (a single large file), ``mb`` megabytes in all; returns the bytes and files written."""
    lines = [line.encode() + b"\n" for doc in read_corpus(source).documents for line in doc.splitlines() if line]
    rng = np.random.default_rng(seed)
    total, target, n = 0, int(mb * 1e6), 0
    while total < target:
        size = target // 5 if n == 0 else min(int(FILE_MB * 1e6), target - total)
        picks = rng.integers(0, len(lines), size // 30 + 1)  # more lines than needed, then cut
        data = b"".join(lines[i] for i in picks)
        while len(data) < size:
            data += data
        data = data[: data.rfind(b"\n", 0, size) + 1 or data.find(b"\n") + 1]  # whole lines
        path = root / f"{n // 100:03}" / f"{n:05}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        total, n = total + len(data), n + 1
    return total, n


def _tree_pss_kib() -> int:
    """Proportional resident KiB (PSS) of this process and of its children (the tokenizer workers):
    pages they share, as forked workers share the parent's, counted once in all."""
    pids = [os.getpid()]
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:  # a thread that ended meanwhile
            continue
    total = 0
    for pid in pids:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:  # ended meanwhile
            continue
        total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
    return total


def measure_build(root: str, cache_dir: str, num_proc: int) -> dict:
    """Build the cache of ``root`` (cl100k corpus vocabulary): seconds, and the peak resident
    memory of this process and of all of them together (PSS, sampled every 0.5 s)."""
    base = build_base_tokenizer("tiktoken")
    base.encode("warm up")
    peak, done = [_tree_pss_kib()], threading.Event()

    def sample() -> None:
        while not done.wait(0.5):  # smaps_rollup walks the page tables: rarely, or it slows the build
            peak.append(_tree_pss_kib())

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    before = _status_kib("VmRSS")
    start = time.perf_counter()
    tokens = load_or_build_tokens(open_corpus(root), base, cache_dir, num_proc=num_proc)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    return {
        "seconds": seconds,
        "tokens": int(len(tokens.ids)),
        "before_mib": before / 1024,  # the interpreter, NumPy, torch (the tokenizer module's import), the BPE
        "peak_mib": _status_kib("VmHWM") / 1024,
        "all_peak_mib": max(peak) / 1024,
    }


def measure_tiktoken(root: str, num_threads: int, limit_mb: float) -> dict:
    """tiktoken's ``encode_ordinary_batch`` over the first ``limit_mb`` of the files (read beforehand, not timed)."""
    from attnlab.data.tokenizer import load_tiktoken

    enc = load_tiktoken("cl100k_base")
    texts, total = [], 0
    for path in open_corpus(root).files:
        if total >= limit_mb * 1e6:
            break
        texts.append(path.read_text(encoding="utf-8"))
        total += len(texts[-1].encode())
    enc.encode_ordinary("warm up")
    start = time.perf_counter()
    enc.encode_ordinary_batch(texts, num_threads=num_threads)
    return {"seconds": time.perf_counter() - start, "bytes": total}


def measure_start(root: str, cache_dir: str) -> dict:
    """Seconds to set up the data of a run whose corpus is cached: list and stat the files, check
    and memory-map the token file (after the imports)."""
    from attnlab.data.datamodule import TextDataModule

    start = time.perf_counter()
    dm = TextDataModule(path=root, cache_dir=cache_dir, context_length=64, batch_size=16)
    dm.setup("fit")
    return {"seconds": time.perf_counter() - start, "train_tokens": int(len(dm.train_ids))}


def measure_training_rss(root: str, cache_dir: str, steps: int) -> dict:
    """Resident memory of a process that sets up the cached corpus and trains the default model for
    ``steps`` steps on its windows: VmRSS, and its anonymous and file-backed parts (MiB)."""
    import torch
    import torch.nn.functional as F

    from attnlab.data.datamodule import TextDataModule
    from attnlab.model import GPT, ModelConfig

    torch.manual_seed(0)
    dm = TextDataModule(path=root, cache_dir=cache_dir, context_length=64, batch_size=16)
    dm.setup("fit")
    model = GPT(ModelConfig(vocab_size=dm.vocab_size, context_length=64))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    windows = RandomWindows(dm.train_ids, 64, 16, seed=0)
    for k in range(steps):
        x, y = windows.batch(k)  # (B, T), (B, T)
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.view(-1, logits.size(-1)), y.reshape(-1))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    status = dict(line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines() if ":" in line)
    mib = {key: int(status[key].split()[0]) / 1024 for key in ("VmRSS", "RssAnon", "RssFile")}
    return {"rss_mib": mib["VmRSS"], "anon_mib": mib["RssAnon"], "file_mib": mib["RssFile"], "vocab": dm.vocab_size}


def scale(source: Path, mb: float, quick: bool) -> dict:
    """Every figure of one generated corpus of ``mb`` MB (and of the 5 MB reference)."""
    call = fresh.call_here if quick else fresh.call
    n = cores()
    with tempfile.TemporaryDirectory() as tmp:
        big, small, cache = Path(tmp) / "big", Path(tmp) / "small", str(Path(tmp) / "cache")
        nbytes, files = generate_corpus(source, big, mb)
        generate_corpus(source, small, min(SMALL_MB, mb), seed=1)
        # tiktoken just before and just after the build, so that a machine whose speed drifts moves both columns
        before = call("bench.data:measure_tiktoken", root=str(big), num_threads=n, limit_mb=BASELINE_MB)
        build = call("bench.data:measure_build", root=str(big), cache_dir=cache, num_proc=n)
        after = call("bench.data:measure_tiktoken", root=str(big), num_threads=n, limit_mb=BASELINE_MB)
        starts = [call("bench.data:measure_start", root=str(big), cache_dir=cache)["seconds"] for _ in range(3)]
        call("bench.data:measure_build", root=str(small), cache_dir=cache, num_proc=n)
        steps = 2 if quick else 20
        rss = call("bench.data:measure_training_rss", root=str(big), cache_dir=cache, steps=steps)
        rss_small = call("bench.data:measure_training_rss", root=str(small), cache_dir=cache, steps=steps)
    ours = nbytes / 1e6 / build["seconds"]
    theirs = (before["bytes"] + after["bytes"]) / 1e6 / (before["seconds"] + after["seconds"])
    row = {
        "mb": nbytes / 1e6,
        "files": files,
        "cores": n,
        "tokens": build["tokens"],
        "build_s": build["seconds"],
        "mb_per_s": ours,
        "tiktoken_mb_per_s": theirs,
        "tiktoken_mb": before["bytes"] / 1e6,
        "ratio": ours / theirs,
        "before_mib": build["before_mib"],
        "peak_mib": build["peak_mib"],
        "all_peak_mib": build["all_peak_mib"],
        "start_s": median(starts),
        "rss_mib": rss["rss_mib"],
        "rss_anon_mib": rss["anon_mib"],
        "rss_small_mib": rss_small["rss_mib"],
        "rss_small_anon_mib": rss_small["anon_mib"],
        "train_steps": steps,
    }
    print(
        f"  data at {row['mb']:.0f} MB: {ours:.1f} MB/s ({100 * row['ratio']:.0f}% of tiktoken's {theirs:.1f}), "
        f"peak {row['all_peak_mib']:.0f} MiB, start {row['start_s']:.2f} s, "
        f"training RSS {row['rss_mib']:.0f} vs {row['rss_small_mib']:.0f} MiB",
        flush=True,
    )
    return row


def table(result: dict, step_ms: dict[str, float] | None = None) -> str:
    """``step_ms``: Lightning's fp32 ms/step per tokenizer name (section 1), for the batch's share."""
    step_ms = step_ms or {}
    lines = [
        f"`{result['corpus']}` ({result['bytes'] / 1e6:.1f} MB of UTF-8), median of {result['repeats']} runs. First "
        "tokenization: stream and tokenize every file, build the corpus vocabulary, write the token file and its "
        "sidecar (a fresh cache folder each time). Cached load: list and stat the files, find the cache by their "
        f"manifest, check it and memory-map the ids (reading the whole text, for comparison: {result['read_s']:.3f} "
        "s). Batch: one training batch (`RandomWindows.batch`, median of 200 calls per run), and its share of the "
        "config's Lightning fp32 step (section 1).",
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
    if result.get("scale"):
        lines += ["", scale_table(result["scale"])]
    return "\n".join(lines)


def scale_table(rows: list[dict]) -> str:
    lines = [
        "At scale (`ATTNLAB_BENCH_DATA_MB`): shuffled Shakespeare lines, files of 1 MB and one of a fifth of the "
        "corpus, cl100k corpus vocabulary, one run each. Build: from scratch on all cores (`data.num_proc`), end to "
        "end; tiktoken: `encode_ordinary_batch` on as many threads over the first 200 MB, read beforehand, just before "
        "and just after the build (target: at least 80% of it). Peak: resident memory of the build's process (in brackets: before the build, the "
        "interpreter, NumPy, torch and the BPE), and of it and its workers together, their shared pages counted once "
        "(PSS; target: at most 1.5 GiB). Start: setting up the data of a run with the corpus cached, median of 3 fresh "
        "processes (target: under 3 s at 2 GB). Training RSS: a process that sets up the corpus and trains the "
        f"default model for {rows[0]['train_steps']} steps, against the same on a 5 MB corpus (target: within 100 MB; anonymous memory in "
        "brackets, the rest are pages of mapped files).",
        "",
        "| corpus (MB) | cores | tokens | build (s) | MB/s | tiktoken MB/s | ratio | peak (MiB) | all processes (MiB) "
        "| start (s) | training RSS (MiB) | on 5 MB (MiB) |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        lines.append(
            f"| {r['mb']:,.0f} ({r['files']} files) | {r['cores']} | {r['tokens']:,} | {r['build_s']:.1f} | {r['mb_per_s']:.1f} | "
            f"{r['tiktoken_mb_per_s']:.1f} | {100 * r['ratio']:.0f}% | {r['peak_mib']:.0f} ({r.get('before_mib', 0):.0f}) | "
            f"{r['all_peak_mib']:.0f} | "
            f"{r['start_s']:.2f} | {r['rss_mib']:.0f} ({r['rss_anon_mib']:.0f}) | "
            f"{r['rss_small_mib']:.0f} ({r['rss_small_anon_mib']:.0f}) |"
        )
    return "\n".join(lines)
