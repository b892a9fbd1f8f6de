"""Train-step throughput: our sharded jitted step vs HF transformers `PhiForCausalLM` (PyTorch eager).

    python -m benchmarks.train_step [--shapes 6.8M,125M] [--steps 5] [--no-write]

Same shape, same batch, same objective (next-token cross-entropy on every token), same
optimiser (AdamW; ours with its warm-up schedule, clipping and weight-decay mask), float32
on both sides, in the same process. Steps of the two alternate and each is timed alone, so
load from other processes on a shared machine hits both alike; the median step is reported.
MFU uses one FLOP count for both (`model.flops_per_token`: 6N plus attention) and the
measured float32 matmul peak of this CPU (`metrics.measure_cpu_flops`).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

SHAPES = {
    # name: (d_model, layers, heads, mlp, vocab, rotary_dim, seq, batch)
    "6.8M": (256, 6, 8, 1024, 4096, 16, 256, 16),
    "125M": (768, 12, 12, 3072, 51200, 32, 512, 4),  # configs/phi_125m.py's shape
}


def ours(shape, seed: int = 0):
    """(step(batch_np) -> loss, n_params) for our train step on one device."""
    import jax
    import numpy as np

    from tinygsm_jax import sharding
    from tinygsm_jax.config import load_config
    from tinygsm_jax.model import count_params
    from tinygsm_jax.train_step import make_trainer

    d, n_layers, heads, mlp, vocab, rot, seq, batch = shape
    config = load_config(
        "tiny",
        [
            f"--config.model.d_model={d}",
            f"--config.model.n_layers={n_layers}",
            f"--config.model.n_heads={heads}",
            f"--config.model.d_mlp={mlp}",
            f"--config.model.vocab_size={vocab}",
            f"--config.model.rotary_dim={rot}",
            f"--config.model.max_len={seq}",
            f"--config.data.seq_len={seq}",
            f"--config.train.global_batch={batch}",
            "--config.model.dtype=float32",
        ],
    )
    trainer = make_trainer(config, sharding.make_mesh(devices=jax.devices()[:1]))
    state = [trainer.init(seed)]
    compiled = trainer.step_fn.lower(trainer.abstract_state, trainer.abstract_batch).compile()
    pos = np.broadcast_to(np.arange(seq, dtype=np.int32), (batch, seq))

    def step(tokens: np.ndarray) -> float:
        b = {
            "inputs": tokens[:, :-1],
            "targets": tokens[:, 1:],
            "loss_mask": np.ones((batch, seq), np.float32),
            "segment_ids": np.ones((batch, seq), np.int32),
            "positions": pos,
        }
        state[0], m = compiled(state[0], trainer.put_batch(b))
        return float(m["loss"])  # waits for the step

    return step, count_params(trainer.model_cfg), trainer.model_cfg


def theirs(shape, seed: int = 0):
    """(step(batch_np) -> loss, n_params) for HF PhiForCausalLM + torch.optim.AdamW."""
    import torch
    from transformers import PhiConfig, PhiForCausalLM

    d, n_layers, heads, mlp, vocab, rot, seq, batch = shape
    torch.manual_seed(seed)
    cfg = PhiConfig(
        vocab_size=vocab,
        hidden_size=d,
        intermediate_size=mlp,
        num_hidden_layers=n_layers,
        num_attention_heads=heads,
        partial_rotary_factor=rot / (d // heads),
        max_position_embeddings=seq,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attention_dropout=0.0,
        tie_word_embeddings=False,
    )
    model = PhiForCausalLM(cfg).train()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.95), weight_decay=0.01)

    def step(tokens) -> float:
        t = torch.from_numpy(tokens.astype("int64"))
        loss = model(input_ids=t[:, :-1], labels=t[:, :-1]).loss  # HF shifts labels inside
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return float(loss.detach())

    return step, sum(p.numel() for p in model.parameters()), cfg


def bench(name: str, steps: int, peak: float) -> dict:
    import numpy as np

    from tinygsm_jax.model import flops_per_token

    shape = SHAPES[name]
    seq, batch = shape[6], shape[7]
    rng = np.random.default_rng(0)
    ours_step, n_ours, mcfg = ours(shape)
    theirs_step, n_theirs, _ = theirs(shape)
    assert n_ours == n_theirs, (n_ours, n_theirs)
    times = {"ours": [], "torch": []}
    for i in range(steps + 1):  # step 0 warms up both (torch allocator, our first dispatch)
        tokens = rng.integers(0, shape[4], (batch, seq + 1), dtype=np.int32)
        for who, fn in (
            (("ours", ours_step), ("torch", theirs_step))
            if i % 2 == 0
            else (("torch", theirs_step), ("ours", ours_step))
        ):
            t = time.perf_counter()
            fn(tokens)
            if i:
                times[who].append(time.perf_counter() - t)
    tokens_per_step = batch * seq
    fpt = flops_per_token(mcfg, seq)
    out = {"shape": name, "n_params": n_ours, "seq": seq, "batch": batch, "flops_per_token": fpt}
    for who, ts in times.items():
        tps = tokens_per_step / statistics.median(ts)
        out[who] = {"step_s": statistics.median(ts), "tokens_per_sec": tps, "mfu": tps * fpt / peak}
    out["ratio"] = out["ours"]["tokens_per_sec"] / out["torch"]["tokens_per_sec"]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="6.8M,125M")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per side per shape")
    parser.add_argument(
        "--no-write", action="store_true", help="do not update benchmarks/RESULTS.md"
    )
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")

    import jax
    import torch

    from benchmarks.results import machine, update_section
    from tinygsm_jax.metrics import measure_cpu_flops

    peak = measure_cpu_flops()
    results = [bench(name, args.steps, peak) for name in args.shapes.split(",")]
    load = os.getloadavg()[0]
    lines = [
        "## Train step: ours (JAX, jitted) vs HF `PhiForCausalLM` (PyTorch eager, AdamW)",
        "",
        f"Machine: {machine()}; jax {jax.__version__} ({jax.device_count()} device), torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); float32 both; load average {load:.1f} during the run "
        "(a shared machine: steps of the two alternate so load hits both alike; median of "
        f"{args.steps} timed steps each). MFU against the measured float32 matmul peak of this CPU, "
        f"{peak / 1e9:.0f} GFLOP/s; FLOPs per token from `model.flops_per_token` (6N + attention) for both.",
        "",
        "| shape | params | seq x batch | ours tokens/s | torch tokens/s | ours / torch | ours MFU | torch MFU |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['shape']} | {r['n_params'] / 1e6:.1f}M | {r['seq']} x {r['batch']} | "
            f"{r['ours']['tokens_per_sec']:,.0f} | {r['torch']['tokens_per_sec']:,.0f} | **{r['ratio']:.2f}x** | "
            f"{r['ours']['mfu']:.1%} | {r['torch']['mfu']:.1%} |"
        )
    table = "\n".join(lines)
    print(table)
    if not args.no_write:
        update_section("train_step", table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
