"""AOT table: 125M, 350M and 1.3B train steps compiled for v4, v5e, v5p and v6e slices, no TPU.

For each (config, topology) pair `tinygsm_jax.aot.analyze` compiles the real train step with
libtpu, reads the memory per chip from the compiler and projects the step time from XLA's
cost analysis (a roofline; see `tinygsm_jax.aot`). Where the config's micro-batch does not fit,
it is halved until it does (the table says which micro-batch was used). The peer in the same
run is the analytic FLOP count (6N plus attention): the `XLA/model` column is XLA's FLOPs over
it (above 1 by remat's recomputed forward and the softmax/norm/optimizer work).

Projected wall time and cost are for the paper's 20k steps at the on-demand price per chip-hour
in `tinygsm_jax.tpu_topology.CHIPS`. Compiling takes minutes per pair on a 2-core machine; results are
cached per pair (`--cache`) so an interrupted run resumes.

    python -m benchmarks.aot [--configs phi_125m,phi_350m,phi1_5] [--topologies v4-32,...] [--no-write]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from benchmarks.results import MachineGuard, add_guard_args, machine  # noqa: E402
from tinygsm_jax import aot, tpu_topology  # noqa: E402
from tinygsm_jax.config import load_config  # noqa: E402

CONFIGS = ("phi_125m", "phi_350m", "phi1_5")
TOPOLOGIES = ("v4-32", "v5e-16", "v5p-16", "v6e-16")
SIZE = {"phi_125m": "125M", "phi_350m": "350M", "phi1_5": "1.3B"}
STEPS = 20_000


def analyze_fitting(name: str, topology: str) -> dict:
    """The AOT report with the config's micro-batch, halved until the step fits."""
    config = load_config(name)
    micro = int(config.train.micro_batch or config.train.global_batch)
    while True:
        config.train.micro_batch = micro
        probe = aot.analyze(config, topology, project=False)
        if probe["fits"] or micro == 1:
            break
        print(
            f"  {name} on {topology}: micro-batch {micro} needs {probe['peak_bytes_per_chip'] / 2**30:.1f} GiB; halving"
        )
        micro //= 2
    report = aot.add_projection(probe, config) if probe["fits"] else probe
    report["config"] = name
    report["default_micro_batch"] = int(
        load_config(name).train.micro_batch or config.train.global_batch
    )
    return report


def row(r: dict) -> str:
    chip = tpu_topology.CHIPS[tpu_topology.parse_topology(r["topology"]).chip.generation]
    mem = f"{r['peak_bytes_per_chip'] / 2**30:.1f} / {r['hbm_bytes_per_chip'] / 2**30:.0f}"
    micro = str(r["micro_batch"]) + ("" if r["micro_batch"] == r["default_micro_batch"] else "*")
    if r["projected_step_seconds"] is None:
        return f"| {SIZE[r['config']]} | {r['topology']} | {r['chips']} | {micro} | {mem} | no fit | | | | | |"
    step = r["projected_step_seconds"]
    hours = step * STEPS / 3600
    cost = hours * r["chips"] * chip.usd_per_chip_hour
    ratio = r["xla_flops_per_chip"] * r["chips"] / r["model_flops_per_step"]
    return (
        f"| {SIZE[r['config']]} | {r['topology']} | {r['chips']} | {micro} | {mem} | {step:.2f} ({r['bound']}) "
        f"| {100 * r['projected_mfu']:.0f}% | {ratio:.2f} | {hours:.1f} h | ${cost:,.0f} | {r['compile_seconds']:.0f} s |"
    )


def run_grid(
    cache_path: Path,
    configs: str,
    topologies: str,
    analyze: Callable[[str, str], dict],
    tag: str = "",
) -> list[dict]:
    """`analyze(config, topology)` for every pair of the comma-separated lists, each computed
    once: compiles take minutes, so a rerun (or a crash half-way through the table) reuses every
    report already in the JSON cache file (keyed `config@topology` + `tag`)."""
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    reports = []
    for name in configs.split(","):
        for topology in topologies.split(","):
            key = f"{name}@{topology}{tag}"
            if key not in cache:
                t0 = time.perf_counter()
                cache[key] = analyze(name, topology)
                cache_path.write_text(json.dumps(cache, indent=1))
                print(f"{key}: {time.perf_counter() - t0:.0f} s", flush=True)
            reports.append(cache[key])
    return reports


def chip_prices() -> str:
    """The on-demand list price per chip-hour of every TPU generation, for a table's caption."""
    return ", ".join(
        f"{c.generation} ${c.usd_per_chip_hour:.2f}" for c in tpu_topology.CHIPS.values()
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--topologies", default=",".join(TOPOLOGIES))
    parser.add_argument(
        "--cache", default=str(Path(tempfile.gettempdir()) / "tinygsm_aot_bench.json")
    )
    parser.add_argument(
        "--no-write", action="store_true", help="print the table; leave RESULTS.md alone"
    )
    add_guard_args(parser)
    args = parser.parse_args(argv)
    guard = MachineGuard("aot", force=args.force)
    guard.before()
    tpu_topology.ensure_libtpu()
    reports = run_grid(Path(args.cache), args.configs, args.topologies, analyze_fitting)
    prices = chip_prices()
    lines = [
        "## AOT: the train step compiled for TPU slices (no TPU used)",
        "",
        f"`python -m benchmarks.aot` on {machine()}; libtpu's compiler via `python -m tinygsm_jax.aot`.",
        guard.describe(),
        "Global batch 1024 x 1024 tokens, AdamW, bf16 compute, float32 params and optimizer; meshes from",
        "the configs (125M/350M data-parallel, 1.3B fsdp over the slice). Memory: the compiler's peak per",
        "chip / HBM per chip (GiB). Step: XLA cost-analysis roofline, max(FLOPs / peak bf16,",
        "bytes accessed / HBM bandwidth); inter-chip communication is not modelled (assumed to overlap),",
        "so step time is optimistic and MFU a ceiling. XLA/model: XLA's FLOPs over 6N + attention",
        "(remat adds a forward pass).",
        f"20k steps (the paper's run) at on-demand list prices per chip-hour ({prices}; us-central regions,",
        f"as of {tpu_topology.PRICES_AS_OF}: check the Cloud TPU pricing page before budgeting). `*`: micro-batch",
        "halved from the config's default so the step fits.",
        "",
        "| model | slice | chips | micro-batch | memory GiB | step s (bound) | MFU | XLA/model | 20k steps | cost | compile |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ] + [row(r) for r in reports]
    table = "\n".join(lines)
    guard.publish(table, write=not args.no_write)


if __name__ == "__main__":
    main()
