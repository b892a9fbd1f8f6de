"""AOT table for the sampler: 125M, 350M and 1.3B best-of-48 batches compiled for TPU slices, no TPU.

For each (config, topology) pair `tinygsm_jax.aot_sampler.analyze_sampler` compiles the real
sampler program for one batch (8 questions x 48 samples, 256-token prompts, 256 new tokens;
data-parallel over every chip, as `tinygsm_jax.eval` runs it) with libtpu, reads the memory
per chip from the compiler, fits the largest batch that fits, and projects the decode step
from XLA's cost analysis of the step compiled alone (a roofline; see `tinygsm_jax.aot_sampler`).
The peer in the same run is the parameter read: a memory-bound decode step must read every
parameter once per chip (`params/step` column: the float32 parameters' bytes over XLA's bytes
for the mean step).

Results are cached per pair (`--cache`) so an interrupted run resumes.

    python -m benchmarks.aot_sampler [--configs ...] [--topologies ...] [--questions-per-batch 8] [--no-write]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from benchmarks.aot import chip_prices, run_grid  # noqa: E402
from benchmarks.results import MachineGuard, add_guard_args, machine  # noqa: E402
from tinygsm_jax import aot_sampler, tpu_topology  # noqa: E402
from tinygsm_jax.config import load_config  # noqa: E402

CONFIGS = ("phi_125m", "phi_350m", "phi1_5")
TOPOLOGIES = ("v4-32", "v5e-16", "v5p-16", "v6e-16")
SIZE = {"phi_125m": "125M", "phi_350m": "350M", "phi1_5": "1.3B"}


def row(r: dict) -> str:
    mem = f"{r['peak_bytes_per_chip'] / 2**30:.1f} / {r['hbm_bytes_per_chip'] / 2**30:.0f}"
    head = f"| {SIZE[r['config']]} | {r['topology']} | {r['chips']} | {r['questions_per_batch']} x {r['n']} | {mem} | {r['max_questions_per_batch']} |"
    if r["projected_step_seconds"] is None:
        return head + " no fit | | | | | |"
    ratio = r["param_bytes_per_chip"] / r["xla_step_bytes_per_chip"]
    return (
        f"{head} {1e3 * r['projected_step_seconds']:.2f} ({r['bound']}) | {ratio:.2f} "
        f"| {r['projected_tokens_per_second'] / 1e3:,.0f}k | {r['verifier_data_hours']:.1f} h, ${r['verifier_data_cost_usd']:,.0f} "
        f"| {60 * r['eval_hours']:.0f} min, ${r['eval_cost_usd']:,.0f} | {r['analysis_seconds']:.0f} s |"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument("--questions-per-batch", type=int, default=8)
    parser.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "tinygsm_aot_sampler_bench.json")
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; leave RESULTS.md alone"
    )
    add_guard_args(parser)
    args = parser.parse_args(argv)
    guard = MachineGuard("aot_sampler", force=args.force)
    guard.before()
    tpu_topology.ensure_libtpu()

    def report(name: str, topology: str) -> dict:
        r = aot_sampler.analyze_sampler(load_config(name), topology, questions_per_batch=Q)
        return {"config": name, **r}

    Q = args.questions_per_batch
    reports = run_grid(Path(args.cache), args.configs, args.topologies, report, tag=f"@{Q}")
    prices = chip_prices()
    lines = [
        "## AOT: the sampler compiled for TPU slices (no TPU used)",
        "",
        f"`python -m benchmarks.aot_sampler` on {machine()}; libtpu's compiler via",
        "`python -m tinygsm_jax.aot --program sample`. Compile-only: the load changes the compile",
        "column, not the figures (the compiler's memory and cost analysis).",
        guard.describe(),
        "One batch of the real sampler program: 8 questions",
        "x 48 samples, 256-token prompts, 256 new tokens, bf16 compute over float32 parameters (as",
        "eval and verifier_data load them), data-parallel over every chip. Memory: the compiler's peak",
        "per chip / HBM per chip (GiB); largest batch: questions per batch that fit, from the peak at",
        "two batch sizes. Step: mean decode step, XLA cost-analysis roofline of the step compiled alone,",
        "max(FLOPs / peak bf16, bytes accessed / HBM bandwidth); inter-chip communication is not",
        "modelled, so times are optimistic. params/step: the float32 parameters' bytes over XLA's bytes",
        "per step (below 1: XLA counts the parameters as read once in bf16, plus the cache).",
        "Tokens/s: generated token slots over the slice with every sample running all 256 steps (the",
        "loop stops when a batch's samples have all stopped, so real batches are shorter). Jobs: the",
        "paper's verifier data (7,473 GSM8K train questions x 48 x 3 checkpoints x 2 temperatures,",
        "2.15M programs) and the GSM8K eval (1,319 x 48 plus the greedy pass), decode only (the sandbox",
        "runs on the hosts' CPUs meanwhile), at this batch of 8 questions; a larger batch, up to the",
        "largest that fits, amortises the parameter reads over more rows and cuts the time nearly in",
        f"proportion while the step stays memory-bound. On-demand list prices per chip-hour ({prices};",
        f"us-central regions, as of {tpu_topology.PRICES_AS_OF}: check the Cloud TPU pricing page before budgeting).",
        "",
        "| model | slice | chips | batch | memory GiB | largest batch | step ms (bound) | params/step | tokens/s | verifier data | eval | compile |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ] + [row(r) for r in reports]
    table = "\n".join(lines)
    guard.publish(table, write=not args.no_write)


if __name__ == "__main__":
    main()
