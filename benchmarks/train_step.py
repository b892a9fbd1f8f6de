"""Train-step throughput: our sharded jitted step vs HF transformers `PhiForCausalLM` (PyTorch eager).

    python -m benchmarks.train_step [--shapes 6.8M,125M] [--steps 3] [--rounds 3] [--no-write] [--force]

Same shape, same batch, same objective (next-token cross-entropy on every token), same
optimiser (AdamW; ours with its warm-up schedule, clipping and weight-decay mask), float32
on both sides, in the same process. The two sides alternate over `--rounds` rounds of
`--steps` timed steps each (which side goes first flips every round), so drift of the machine
reaches both; each round gives a median step per side and a ratio, and the table reports the
medians over rounds plus every round's ratio. `MachineGuard` refuses to run on a busy machine.
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


def ours(shape, seed: int = 0, *, baseline: bool = False):
    """(step(batch_np) -> loss, n_params, ModelConfig) for our train step as shipped: a device
    per core (`cli.split_cpu_into_devices`, set by `main`) and the layer scan unrolled.

    `baseline` is the program before those two changes, one device and a rolled scan, so
    each run measures what they gain.
    """
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
            f"--config.model.scan_unroll={1 if baseline else n_layers}",
        ],
    )
    devices = jax.devices()[:1] if baseline else jax.devices()
    trainer = make_trainer(config, sharding.make_mesh(devices=devices))
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


def bench(name: str, steps: int, rounds: int, peak: float) -> dict:
    """Alternate ours and torch over `rounds` rounds of `steps` steps; medians and round ratios."""
    import numpy as np

    from tinygsm_jax.model import flops_per_token

    shape = SHAPES[name]
    seq, batch = shape[6], shape[7]
    rng = np.random.default_rng(0)
    ours_step, n_ours, mcfg = ours(shape)
    baseline_step, _, _ = ours(shape, baseline=True)
    theirs_step, n_theirs, _ = theirs(shape)
    assert n_ours == n_theirs, (n_ours, n_theirs)
    sides = {"ours": ours_step, "baseline": baseline_step, "torch": theirs_step}
    warm = rng.integers(0, shape[4], (batch, seq + 1), dtype=np.int32)
    for fn in sides.values():  # warms up both (torch allocator, our first dispatch)
        fn(warm)
    tokens_per_step = batch * seq
    per_round: list[dict[str, float]] = []  # tokens/s of each side in each round
    for r in range(rounds):
        order = list(sides) if r % 2 == 0 else list(sides)[::-1]
        tps = {}
        for who in order:
            times = []
            for _ in range(steps):
                tokens = rng.integers(0, shape[4], (batch, seq + 1), dtype=np.int32)
                t = time.perf_counter()
                sides[who](tokens)
                times.append(time.perf_counter() - t)
            tps[who] = tokens_per_step / statistics.median(times)
        per_round.append(tps)
    fpt = flops_per_token(mcfg, seq)
    out = {"shape": name, "n_params": n_ours, "seq": seq, "batch": batch, "flops_per_token": fpt}
    for who in sides:
        tps = statistics.median(r[who] for r in per_round)
        out[who] = {"tokens_per_sec": tps, "mfu": tps * fpt / peak}
    out["round_ratios"] = [r["ours"] / r["torch"] for r in per_round]
    out["ratio"] = statistics.median(out["round_ratios"])
    out["gain"] = statistics.median(r["ours"] / r["baseline"] for r in per_round)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default="6.8M,125M")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per side per round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds (medians kept)")
    parser.add_argument(
        "--no-write", action="store_true", help="do not update benchmarks/RESULTS.md"
    )
    from benchmarks.results import MachineGuard, add_guard_args

    add_guard_args(parser)
    args = parser.parse_args(argv)
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    from tinygsm_jax.cli import split_cpu_into_devices

    split_cpu_into_devices()  # as every CLI does
    guard = MachineGuard("train_step", force=args.force)
    guard.before()

    import jax
    import torch

    from tinygsm_jax.metrics import measure_cpu_flops

    peak = measure_cpu_flops()
    results = [bench(name, args.steps, args.rounds, peak) for name in args.shapes.split(",")]
    guard.after()
    lines = [
        "## Train step: ours (JAX, jitted) vs HF `PhiForCausalLM` (PyTorch eager, AdamW)",
        "",
        f"{guard.describe()} jax {jax.__version__}, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); float32 both. Ours as shipped: {jax.device_count()} "
        "CPU devices (one per core, the batch data-parallel over them) and the layer scan "
        "unrolled; the baseline is the program before those changes (one device, rolled scan). "
        f"The three sides alternate over {args.rounds} rounds of {args.steps} timed steps each "
        "(the order flips every round); tokens/s are medians over rounds of each round's median "
        "step, ratios the median of the rounds' ratios. MFU against the measured float32 matmul peak of this "
        f"CPU, {peak / 1e9:.0f} GFLOP/s; FLOPs per token from `model.flops_per_token` "
        "(6N + attention) for both.",
        "",
        "| shape | params | seq x batch | ours tokens/s | baseline tokens/s | torch tokens/s | ours / torch | each round | ours / baseline | ours MFU | torch MFU |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        lines.append(
            f"| {r['shape']} | {r['n_params'] / 1e6:.1f}M | {r['seq']} x {r['batch']} | "
            f"{r['ours']['tokens_per_sec']:,.0f} | {r['baseline']['tokens_per_sec']:,.0f} | "
            f"{r['torch']['tokens_per_sec']:,.0f} | **{r['ratio']:.2f}x** | "
            f"{', '.join(f'{x:.2f}x' for x in r['round_ratios'])} | {r['gain']:.2f}x | "
            f"{r['ours']['mfu']:.1%} | {r['torch']['mfu']:.1%} |"
        )
    guard.publish("\n".join(lines), write=not args.no_write)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
