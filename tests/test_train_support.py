"""Helpers for the training tests: a synthetic input pipeline and a CLI runner that uses it.

`SyntheticPipeline` has `InputPipeline`'s interface, but its global batch for step k depends
only on (seed, k), whatever the number of processes: that is what lets "2 processes of 4
devices" be compared with "1 process of 8". Run as a script it is `python -m tinygsm_jax.train`
with the synthetic source (config.data.path = a tokenizer directory), plus test hooks:
TRAIN_TEST_SIGNAL_AT=N sends TRAIN_TEST_SIGNAL (KILL or TERM) to itself when asked for the
batch of step N, after checkpoint TRAIN_TEST_WAIT_CKPT (if set) is complete in --workdir.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

SMALL = [
    "--config.model.vocab_size=320",
    "--config.model.d_model=64",
    "--config.model.n_layers=2",
    "--config.model.n_heads=4",
    "--config.model.d_mlp=128",
    "--config.model.rotary_dim=8",
    "--config.model.max_len=64",
    "--config.data.seq_len=32",
    "--config.train.global_batch=8",
    "--config.train.steps=6",
    "--config.train.warmup_steps=2",
    "--config.train.lr=1e-3",
    "--config.checkpoint.every=2",
    "--config.log.every=1",
]


def synthetic_batch(
    seed: int, step: int, rows: int, seq_len: int, vocab: int, objective: str
) -> dict:
    """Two packed documents per row; progressions mod vocab, loss on each document's second half.

    For the verifier, label-1 documents use the lower half of the vocabulary and label-0 the
    upper half: a labelling any model can separate.
    """
    rng = np.random.default_rng([seed, step])
    out = {
        k: np.zeros((rows, seq_len), np.int32)
        for k in ("inputs", "targets", "segment_ids", "positions")
    }
    out["loss_mask"] = np.zeros((rows, seq_len), np.float32)
    out["labels"] = np.zeros((rows, seq_len), np.float32)
    for r in range(rows):
        cut = int(rng.integers(seq_len // 4, seq_len - seq_len // 4))
        used = seq_len - int(rng.integers(0, 4))  # a little padding at the end
        for seg, (a, b) in enumerate(((0, cut), (cut, used)), start=1):
            n = b - a
            label = float(rng.integers(0, 2))
            half = vocab // 2
            lo = 0 if (objective != "verifier" or label) else half
            start, stride = int(rng.integers(0, half)), int(rng.integers(1, 5))
            toks = lo + (start + stride * np.arange(n + 1)) % half
            out["inputs"][r, a:b] = toks[:-1]
            out["targets"][r, a:b] = toks[1:]
            out["segment_ids"][r, a:b] = seg
            out["positions"][r, a:b] = np.arange(n)
            out["loss_mask"][r, a + n // 2 : b] = 1.0
            out["labels"][r, a:b] = label
    if objective != "verifier":
        del out["labels"]
    return out


class SyntheticPipeline:
    """`InputPipeline`'s interface over `synthetic_batch`; this process's rows of each global batch."""

    def __init__(
        self,
        tokenizer_dir,
        *,
        seq_len,
        global_batch,
        objective,
        seed,
        process_index,
        process_count,
        vocab: int = 256,
    ):
        self.tokenizer_dir, self.tokenizer_fingerprint = str(tokenizer_dir), None
        self.seq_len, self.global_batch, self.objective, self.seed = (
            seq_len,
            global_batch,
            objective,
            seed,
        )
        self.rows = global_batch // process_count
        self.offset = process_index * self.rows
        self.vocab = vocab
        self.step = 0

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        _maybe_signal(self.step + 1)
        b = synthetic_batch(
            self.seed, self.step, self.global_batch, self.seq_len, self.vocab, self.objective
        )
        self.step += 1
        return {k: v[self.offset : self.offset + self.rows] for k, v in b.items()}

    def get_state(self) -> dict:
        return {"step": self.step}

    def set_state(self, state: dict) -> None:
        self.step = int(state["step"])


def _maybe_signal(step: int) -> None:
    at = os.environ.get("TRAIN_TEST_SIGNAL_AT")
    if not at or int(at) != step:
        return
    wait = os.environ.get("TRAIN_TEST_WAIT_CKPT")
    if wait:
        ckpt = Path(os.environ["TRAIN_TEST_WORKDIR"]) / "checkpoints" / wait
        deadline = time.time() + 60
        while not ckpt.is_dir() and time.time() < deadline:
            time.sleep(0.05)
    sig = (
        signal.SIGKILL if os.environ.get("TRAIN_TEST_SIGNAL", "KILL") == "KILL" else signal.SIGTERM
    )
    os.kill(os.getpid(), sig)
    time.sleep(0.5)  # let a SIGTERM handler run before the batch is used


def use_synthetic(train_module, monkeypatch=None) -> None:
    """Make `train_module.open_pipeline` the synthetic source (config.data.path = tokenizer dir)."""
    import jax

    def open_pipeline(config):
        return SyntheticPipeline(
            config.data.path,
            seq_len=int(config.data.seq_len),
            global_batch=int(config.train.global_batch),
            objective=config.objective,
            seed=int(config.train.seed),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
        )

    if monkeypatch is None:
        train_module.open_pipeline = open_pipeline
    else:
        monkeypatch.setattr(train_module, "open_pipeline", open_pipeline)


if __name__ == "__main__":
    from helpers import python_stdout_only

    python_stdout_only()
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tinygsm_jax import train
    from tinygsm_jax.cli import run_main

    use_synthetic(train)
    run_main(train.main, sys.argv[1:])
