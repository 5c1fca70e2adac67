"""``attnlab generate``: a checkpoint and a prompt in, text streamed out, tokens/s reported; or,
for an encoder–decoder checkpoint, source sentences in and their outputs out
(:mod:`attnlab.tools.translate`).

Config: conf/generate.yaml. The sampling loop itself is :func:`attnlab.model.sampling.generate`.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import torch

from attnlab.checks import from_dict, is_int, require_int
from attnlab.data.tokenizer import Tokenizer
from attnlab.errors import ConfigError
from attnlab.model.config import architecture_of
from attnlab.model.sampling import generate
from attnlab.runs.checkpoint import model_from_checkpoint, read_checkpoint
from attnlab.system.hardware import pick_device
from attnlab.tools.translate import translate_text


@dataclass
class GenerateConfig:
    """conf/generate.yaml, checked."""

    ckpt_path: str
    prompt: str = "\n"
    prompt_file: str | None = None
    max_new_tokens: int = 200
    temperature: float = 0.8
    top_k: int | None = 200
    top_p: float | None = None
    num_samples: int = 1
    seed: int = 1337
    echo_prompt: bool = True
    use_cache: bool = True
    slide: int | None = None
    device: str = "auto"
    source: str | None = None  # an encoder–decoder checkpoint's input
    source_file: str | None = None  # or one source per line
    beam_size: int = 1

    def __post_init__(self) -> None:
        require_int(self.beam_size, "beam_size")
        require_int(self.max_new_tokens, "max_new_tokens")
        require_int(self.num_samples, "num_samples")
        require_int(self.top_k, "top_k", allow_none=True)
        if not is_int(self.seed):
            raise ConfigError(f"seed must be an integer, got {self.seed!r}")
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ConfigError(f"temperature must be a number >= 0 (0 = greedy), got {self.temperature!r}")
        if self.top_p is not None and (not isinstance(self.top_p, (int, float)) or not 0 < self.top_p <= 1):
            raise ConfigError(f"top_p must be in (0, 1] or null, got {self.top_p!r}")
        if not isinstance(self.prompt, str):  # only from a config file: the command line keeps text as typed
            raise ConfigError(f"prompt must be text, got {self.prompt!r}")
        if self.prompt_file is not None:
            path = Path(self.prompt_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"prompt_file {path} does not exist; pass a text file or use prompt=...")
            self.prompt = path.read_text(encoding="utf-8")
        if self.source_file is not None:
            path = Path(self.source_file).expanduser()
            if not path.is_file():
                raise ConfigError(f"source_file {path} does not exist; pass a text file, one source per line")
            self.source = path.read_text(encoding="utf-8")

    def sources(self) -> list[str] | None:
        """The sources to translate, one per line of ``source``; None when none was given."""
        if self.source is None:
            return None
        return [line for line in str(self.source).splitlines() if line.strip()] or [""]


class TextStream:
    """Writes the text of ids as they come. cl100k can split a character's UTF-8 bytes across
    tokens: ids whose text ends inside a character wait for the token that completes it."""

    def __init__(self, tokenizer: Tokenizer, out: TextIO):
        self.tokenizer, self.out = tokenizer, out
        self.pending: list[int] = []  # ids not written yet
        self.text: list[str] = []  # everything written

    def add(self, token: int) -> None:
        self.pending.append(token)
        piece = self.tokenizer.decode(self.pending)
        if not piece.endswith("\ufffd") or len(self.pending) >= 8:  # 8: no character is that long
            self._write(piece)

    def finish(self) -> str:
        if self.pending:
            self._write(self.tokenizer.decode(self.pending))
        return "".join(self.text)

    def _write(self, piece: str) -> None:
        self.out.write(piece)
        self.out.flush()
        self.text.append(piece)
        self.pending = []


def generate_text(cfg: Any, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> dict[str, Any]:
    """Stream ``num_samples`` continuations of ``cfg.prompt`` to ``out``; report speed on ``err``.

    Returns the samples' texts (continuations only) and the speed figures.
    """
    from omegaconf import OmegaConf

    settings = from_dict(GenerateConfig, OmegaConf.to_container(cfg, resolve=True), "generate")
    device = pick_device(settings.device)
    checkpoint = read_checkpoint(settings.ckpt_path)
    seq2seq = architecture_of(dict(checkpoint["hyper_parameters"]["model"])) == "transformer"
    if seq2seq != (settings.sources() is not None):
        raise ConfigError(
            f'{settings.ckpt_path} holds an encoder–decoder: give it source="..." (or source_file=...) to translate'
            if seq2seq
            else f'{settings.ckpt_path} holds a GPT, which continues a prompt: give prompt="..." instead of source='
        )
    if seq2seq:
        return translate_text(checkpoint, settings.sources(), settings.beam_size, device, out, err)
    model, tokenizer = model_from_checkpoint(checkpoint)
    model.to(device)
    prompt = torch.as_tensor(tokenizer.encode(settings.prompt, respell=True).astype("int64"), device=device)  # (T0,)
    if prompt.numel() == 0:
        raise ConfigError('the prompt is empty; give some text, e.g. prompt="ROMEO:"')
    generator = torch.Generator(device).manual_seed(settings.seed)

    texts, tokens, started = [], 0, time.perf_counter()
    for n in range(settings.num_samples):
        if settings.num_samples > 1:
            out.write(("\n" if n else "") + f"--- sample {n + 1} of {settings.num_samples} ---\n")
        if settings.echo_prompt:
            out.write(settings.prompt)
        stream = TextStream(tokenizer, out)
        for nxt in generate(
            model,
            prompt,
            settings.max_new_tokens,
            settings.temperature,
            settings.top_k,
            settings.top_p,
            generator,
            use_cache=settings.use_cache,
            slide=settings.slide,
        ):
            if int(nxt[0]) == tokenizer.eot_id:  # (1,): one sequence; the end of a document ends the text
                break
            stream.add(int(nxt[0]))
            tokens += 1
        texts.append(stream.finish())
    out.write("\n")
    out.flush()
    seconds = time.perf_counter() - started
    speed = tokens / seconds
    how = "KV cache" if settings.use_cache else "no cache"
    print(f"{tokens} tokens in {seconds:.2f} s: {speed:.1f} tokens/s ({how}, {device.type})", file=err, flush=True)
    return {"texts": texts, "tokens": tokens, "seconds": seconds, "tokens_per_s": speed}


def main(cfg: Any) -> None:
    """``attnlab generate``: Ctrl-C ends the stream with exit status 130, not a traceback."""
    try:
        generate_text(cfg)
    except KeyboardInterrupt:
        print(file=sys.stderr)
        sys.exit(130)
