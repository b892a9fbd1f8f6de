"""Input pipeline tokens/s against the tokens/s the tiny and 125M train steps consume, same machine.

    python -m benchmarks.input_pipeline [--rows 20000] [--steps 5]

Builds a tokenized data set of offline-teacher problems (the embedded default's data), then
measures, in one run on this machine:
  * the pipeline: `InputPipeline` batches of the tiny shape (16 x 256) and the 125M row length
    (1024), counted as batch positions per second (what a train step consumes), plus the share of
    positions that hold real tokens (packing efficiency);
  * the consumers: the real jitted train step (`tinygsm_jax.train_step.make_trainer`) of the tiny
    config and of the 125M config (a small global batch, so a step fits a few seconds of CPU),
    in batch positions per second.
The issue's target: the pipeline serves >= 20x what the tiny train step consumes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def make_rows(n: int) -> list[dict]:
    """Offline-teacher problems (realistic TinyGSM lengths)."""
    from data_gen.offline import generate

    return [
        {"question": r["question"], "code": r["code"]} for r in generate(n, split="train", seed=0)
    ]


def build(tmp: Path, n_rows: int) -> Path:
    from tinygsm_jax.data.builder import build_dataset
    from tinygsm_jax.tokenizer import save_tokenizer, train_tokenizer

    rows = make_rows(n_rows)
    src = tmp / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    tok = tmp / "tok"
    save_tokenizer(
        train_tokenizer((t for r in rows[:2000] for t in (r["question"], r["code"])), 2048), tok
    )
    out = tmp / "ds"
    build_dataset([str(src)], str(out), tokenizer_dir=str(tok), shards=8)
    return out


def pipeline_rate(data_dir: Path, seq_len: int, rows: int, seconds: float) -> dict:
    """Batch positions/s (and the real-token share) of the input pipeline alone."""
    from tinygsm_jax.data.pipeline import InputPipeline

    p = InputPipeline(
        str(data_dir),
        split="train",
        seq_len=seq_len,
        global_batch=rows,
        objective="generator",
        seed=0,
        process_index=0,
        process_count=1,
    )
    next(p)  # start-up (TF graph, first window) is not throughput
    n = real = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        b = next(p)
        n += b["inputs"].size
        real += int((b["segment_ids"] > 0).sum())
    dt = time.perf_counter() - t0
    p.close()
    return {"tokens_per_s": n / dt, "fill": real / max(n, 1)}


def step_rate(config_name: str, steps: int, global_batch: int | None = None) -> dict:
    """Batch positions/s the real jitted train step of `config_name` consumes on this machine."""
    import jax
    import numpy as np

    from tinygsm_jax.config import load_config
    from tinygsm_jax.sharding import make_mesh
    from tinygsm_jax.train_step import make_trainer

    config = load_config(config_name)
    if global_batch is not None:
        config.train.global_batch = global_batch
        config.train.micro_batch = 0
    mesh = make_mesh(-1, 1, 1)
    trainer = make_trainer(config, mesh)
    state = trainer.init(0)
    B, T = trainer.global_batch, trainer.seq_len
    rng = np.random.default_rng(0)
    local = {
        "inputs": rng.integers(0, 2000, (B, T)),
        "targets": rng.integers(0, 2000, (B, T)),
        "loss_mask": np.ones((B, T)),
        "segment_ids": np.ones((B, T)),
        "positions": np.tile(np.arange(T), (B, 1)),
    }
    batch = trainer.put_batch(local)
    state, m = trainer.step_fn(state, batch)  # compile
    jax.block_until_ready(m)
    t0 = time.perf_counter()
    for _ in range(steps):
        state, m = trainer.step_fn(state, batch)
    jax.block_until_ready(m)
    dt = time.perf_counter() - t0
    return {"tokens_per_s": B * T * steps / dt, "batch": B, "seq_len": T, "step_s": dt / steps}


def main(argv: list[str] | None = None) -> int:
    from benchmarks.results import MachineGuard, add_guard_args

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=int, default=10000, help="problems in the benchmark data set")
    ap.add_argument("--seconds", type=float, default=8.0, help="time each pipeline measurement")
    ap.add_argument("--steps", type=int, default=3, help="timed train steps per config")
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    add_guard_args(ap)
    args = ap.parse_args(argv)
    from tinygsm_jax.cli import split_cpu_into_devices

    split_cpu_into_devices()  # the train step as `tinygsm_jax.train` runs it: a device per core
    guard = MachineGuard("input_pipeline", force=args.force)
    guard.before()

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        data_dir = build(Path(tmp), args.rows)
        build_s = time.perf_counter() - t0
        pipe_tiny = pipeline_rate(data_dir, 256, 16, args.seconds)
        pipe_125m = pipeline_rate(data_dir, 1024, 16, args.seconds)
    tiny = step_rate("tiny", args.steps)
    m125 = step_rate("phi_125m", 2, global_batch=2)  # one row per CPU device on 2 cores

    ratio_tiny = pipe_tiny["tokens_per_s"] / tiny["tokens_per_s"]
    ratio_125m = pipe_125m["tokens_per_s"] / m125["tokens_per_s"]
    guard.after()
    md = f"""## input_pipeline

{guard.describe()} Python {platform.python_version()}, JAX CPU backend. Data: {args.rows:,} offline-teacher problems tokenized with a 2048-token BPE, 8 TFRecord
shards (built in {build_s:.1f} s, including TensorFlow start-up). Tokens = batch positions (what a step
consumes); "fill" = share of positions holding real tokens after packing. The ratios come from one
run.

| consumer | train step tokens/s | pipeline tokens/s (same row length) | pipeline / step |
| --- | --- | --- | --- |
| tiny (batch {tiny["batch"]} x {tiny["seq_len"]}, {tiny["step_s"] * 1000:.0f} ms/step) | {tiny["tokens_per_s"]:,.0f} | {pipe_tiny["tokens_per_s"]:,.0f} (fill {pipe_tiny["fill"]:.2f}) | **{ratio_tiny:,.0f}x** (target 20x) |
| 125M (batch {m125["batch"]} x {m125["seq_len"]}, {m125["step_s"]:.1f} s/step) | {m125["tokens_per_s"]:,.0f} | {pipe_125m["tokens_per_s"]:,.0f} (fill {pipe_125m["fill"]:.2f}) | **{ratio_125m:,.0f}x** |

One host process, one Python thread packing (plus TensorFlow's reader threads). On a TPU pod each host
packs only its `global_batch / hosts` rows, so the per-host demand is the step's tokens/s divided by
the number of hosts.
"""
    guard.publish(md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
