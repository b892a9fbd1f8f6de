"""Shared test helpers: a tiny byte-level BPE tokenizer directory, made in seconds."""

from __future__ import annotations

import os
import sys
from pathlib import Path

EOS = "<|endoftext|>"
TEXTS = [
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May.",
    "def simple_math_problem() -> int:\n    result = 48 + 48 // 2\n    return result\n",
    "Weng earns $12 an hour for babysitting. Yesterday, she just did 50 minutes of babysitting.",
    "    hourly_rate = 12\n    minutes = 50\n    result = hourly_rate * minutes / 60\n",
]


def make_tokenizer(out: str | Path, vocab_size: int = 300, texts: list[str] | None = None) -> Path:
    """Train a byte-level BPE on a few strings and save it as an HF tokenizer directory.

    The result loads with `transformers.AutoTokenizer` (eos = pad = `<|endoftext|>`); its size is
    at most `vocab_size` (the 256 byte tokens, EOS and the merges the texts allow).
    """
    from tinygsm_jax.tokenizer import train_tokenizer

    tok = train_tokenizer(texts or TEXTS, vocab_size)
    out = Path(out)
    tok.save_pretrained(str(out))
    return out


def python_stdout_only() -> None:
    """Keep this process's stdout for what Python prints; native libraries' prints go to stderr.

    Gloo's C++ side writes "[Gloo] Rank R is connected to P peer ranks ..." to file descriptor 1
    from several threads, so its fragments can land anywhere in the CLI's own output (twice this
    failed CI). Called first in a subprocess whose stdout a test compares: fd 1 becomes a copy
    of stderr, and `sys.stdout` writes to the original stdout through a descriptor of its own.
    """
    sys.stdout.flush()
    own = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = os.fdopen(own, "w", buffering=1, encoding="utf-8")


def demo_stages(out: Path, **settings) -> dict:
    """The default demo's stages by name, with `settings` replaced: their argv, nothing run."""
    import dataclasses

    from tinygsm_jax.demo import PRESETS, stages

    s = dataclasses.replace(PRESETS["default"], **settings)
    return {st.name: st for st in stages(s, out, 0, "configs/tiny.py", "configs/tiny_verifier.py")}
