"""Ahead-of-time compile of the real train step for a Cloud TPU topology, on a machine without one.

`python -m tinygsm_jax.aot --config configs/phi1_5.py --topology v5e-16 [--json]` builds the
exact step `tinygsm_jax.train` runs (`train_step.build_train_step`: objective, mesh,
micro-batching, remat, mixed precision) over libtpu's compile-only devices for that topology,
compiles it with the TPU compiler, and reports what the executable needs and what it should do:

- `peak_bytes_per_chip`: the compiler's own `memory_analysis()`. Its `peak_memory_in_bytes`
  when libtpu fills it in, else arguments + outputs + temporaries - aliased (donated state is
  counted once) + generated code. Compared with the chip's HBM (`hbm_bytes_per_chip`) for `fits`.
  When the TPU compiler itself refuses the program for lack of HBM, its numbers are reported.
- `projected_step_seconds`: a roofline from XLA's `cost_analysis()` of the compiled executable,
  per chip: max(flops / peak bf16 FLOP/s, bytes accessed / HBM bandwidth). Inter-chip
  communication is not modelled, so this is a lower bound on the step time (an upper bound
  on MFU). XLA's cost analysis counts a while-loop body once, whatever its trip count, and the
  step has two loops (layers under `lax.scan`, micro-batches under `lax.scan`). So the costs are
  measured on small probes with every scan unrolled: (1 layer, 1 micro-batch), (2, 1), (1, 2),
  (2, 2), same per-chip micro-batch and mesh. Cost is bilinear in layers L and micro-batches N
  (optimizer ~ L, embedding/head ~ N, blocks ~ L*N), so the four probes give it exactly:
  ``C(L, N) = P11 + (L-1)(P21-P11) + (N-1)(P12-P11) + (L-1)(N-1)(P22-P21-P12+P11)``.
  Without micro-batching only the first two probes are needed. XLA's windowed einsum
  (collective matmul over the fsdp axis) makes loops of its own, so the probes are compiled
  with it off (`PROBE_COMPILER_OPTIONS`); `probe_loops` counts any loop still left.
- `projected_mfu`: model FLOPs (`model.flops_per_token`: 6N plus attention, no remat
  recompute) x tokens per step / (chips x peak bf16 FLOP/s x projected_step_seconds).

Topology names follow Cloud TPU's accelerator types: for v4 and v5p the number counts
TensorCores (two per chip: v4-8 is 4 chips, 2x2x1), for v5e and v6e it counts chips (v5e-16 is
4x4; `v5litepod-16` is accepted too). Exit status: 0 fits, 1 does not fit (says by how much),
2 bad input (unknown topology, bad override, libtpu missing).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import time
from typing import Any

from tinygsm_jax.cli import UserError, run_main
from tinygsm_jax.config import add_config_args, load_config
from tinygsm_jax.tpu_topology import (
    PROBE_COMPILER_OPTIONS,
    ensure_libtpu,
    gib,
    memory_per_chip,
    oom_bytes,
    parse_topology,
    topology_devices,
    unrolled_scans,
)


def _compile(config, devices, unroll: bool = False, options: dict | None = None):
    from tinygsm_jax import sharding
    from tinygsm_jax.train_step import build_train_step

    mesh = sharding.make_mesh(
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=devices
    )
    with unrolled_scans() if unroll else contextlib.nullcontext():
        fn, args = build_train_step(config, mesh)
        lowered = fn.lower(*args)
    return lowered.compile(compiler_options=options), mesh


def _probe(config, devices) -> tuple[float, float, int]:
    """(flops, bytes accessed, while loops left) per chip of `config`'s step, scans unrolled."""
    compiled = _compile(config, devices, unroll=True, options=PROBE_COMPILER_OPTIONS)[0]
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    loops = len(re.findall(r"\bwhile\(", compiled.as_text()))
    return float(ca.get("flops", 0.0)), float(ca.get("bytes accessed", 0.0)), loops


def projected_costs(config, devices) -> tuple[float, float, int]:
    """(flops, bytes accessed, loops left in the probes) per chip of one full step (module doc)."""
    L = int(config.model.n_layers)
    B = int(config.train.global_batch)
    micro = int(config.train.micro_batch or B)
    N = B // micro
    probes = {}
    for layers in (1, 2):
        for n in (1, 2) if N > 1 else (1,):
            c = config.copy_and_resolve_references()
            c.model.n_layers = layers
            c.train.global_batch = micro * n
            c.train.micro_batch = micro if n > 1 else 0
            probes[layers, n] = _probe(c, devices)

    def extrapolate(i: int) -> float:
        p11, p21 = probes[1, 1][i], probes[2, 1][i]
        total = p11 + (L - 1) * (p21 - p11)
        if N > 1:
            p12, p22 = probes[1, 2][i], probes[2, 2][i]
            total += (N - 1) * (p12 - p11) + (L - 1) * (N - 1) * (p22 - p21 - p12 + p11)
        return total

    return extrapolate(0), extrapolate(1), max(p[2] for p in probes.values())


def analyze(config, topology: str, project: bool = True) -> dict:
    """Compile the configured train step for `topology`; the report `main` prints."""
    from tinygsm_jax.model import ModelConfig, count_params, flops_per_token

    topo = parse_topology(topology)
    devices = topology_devices(topo)
    B, T = int(config.train.global_batch), int(config.data.seq_len)
    micro = int(config.train.micro_batch or B)
    if micro <= 0 or B % micro:
        raise UserError(f"train.global_batch {B} is not a multiple of train.micro_batch {micro}")
    chip = topo.chip
    report: dict[str, Any] = {
        "topology": topo.name,
        "accelerator_type": topo.accelerator_type,
        "chips": topo.chips,
        "objective": config.objective,
        "global_batch": B,
        "micro_batch": micro,
        "seq_len": T,
        "tokens_per_step": B * T,
        "hbm_bytes_per_chip": chip.hbm_bytes,
    }
    t0 = time.perf_counter()
    try:
        compiled, mesh = _compile(config, devices)
    except Exception as e:  # the TPU compiler refuses programs that overflow HBM
        need = oom_bytes(str(e))
        if need is None:
            raise
        compiled, mesh = None, None
        report["peak_bytes_per_chip"] = need
        report["memory"] = {
            "compiler_error": str(e).strip().splitlines()[0][:300],
            "note": "the compiler stopped at the first allocation that overflowed: a lower bound",
        }
    cfg = ModelConfig.from_config(config.model, platform="tpu")
    report["n_params"] = count_params(cfg)
    report["compute_dtype"] = cfg.dtype
    if compiled is not None:
        report["mesh"] = dict(mesh.shape)
        report["peak_bytes_per_chip"], report["memory"] = memory_per_chip(
            compiled.memory_analysis()
        )
    report["compile_seconds"] = round(time.perf_counter() - t0, 1)
    report["fits"] = report["peak_bytes_per_chip"] <= chip.hbm_bytes
    model_flops = flops_per_token(cfg, T) * B * T
    report["model_flops_per_step"] = model_flops
    report.update(
        xla_flops_per_chip=None,
        xla_bytes_accessed_per_chip=None,
        probe_loops=None,
        bound=None,
        projected_step_seconds=None,
        projected_mfu=None,
    )
    if project and report["fits"]:
        add_projection(report, config, devices)
    report["analysis_seconds"] = round(time.perf_counter() - t0, 1)
    return report


def add_projection(report: dict, config, devices: list | None = None) -> dict:
    """Fill the roofline fields of an `analyze` report (probes compiled for the same slice)."""
    topo = parse_topology(report["topology"])
    devices = devices if devices is not None else topology_devices(topo)
    chip = topo.chip
    flops, nbytes, loops = projected_costs(config, devices)
    compute_s, memory_s = flops / chip.peak_bf16_flops, nbytes / chip.hbm_bytes_per_s
    step_s = max(compute_s, memory_s)
    report.update(
        xla_flops_per_chip=flops,
        xla_bytes_accessed_per_chip=nbytes,
        bound="compute" if compute_s >= memory_s else "memory",
        projected_step_seconds=step_s,
        projected_mfu=report["model_flops_per_step"] / (topo.chips * chip.peak_bf16_flops * step_s),
        # Loops XLA still made in the probes: their bodies count once, so costs are underestimated.
        probe_loops=loops,
    )
    return report


def format_report(r: dict) -> str:
    lines = [
        f"{r['config']} on {r['topology']} ({r['accelerator_type']}: {r['chips']} chips)",
        f"  parameters       {r['n_params']:,}",
        f"  mesh             {r.get('mesh', '-')}   batch {r['global_batch']} x {r['seq_len']} "
        f"(micro-batch {r['micro_batch']}), {r['compute_dtype']}",
        f"  memory per chip  {gib(r['peak_bytes_per_chip'])} of {gib(r['hbm_bytes_per_chip'])} HBM"
        f"  -> {'fits' if r['fits'] else 'DOES NOT FIT'}",
    ]
    if r["projected_step_seconds"] is not None:
        lines.append(
            f"  projected step   {r['projected_step_seconds']:.3g} s ({r['bound']}-bound roofline), "
            f"MFU {100 * r['projected_mfu']:.1f}%"
        )
        if r["probe_loops"]:
            lines.append(
                f"  warning          {r['probe_loops']} loops left in the cost probes: an underestimate"
            )
    lines.append(f"  compiled in      {r['analysis_seconds']:.0f} s")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tinygsm_jax.aot",
        description="Compile the train step (or the sampler) for a Cloud TPU topology (no TPU needed): "
        "memory per chip, projected step time and MFU (tokens/s and job cost).",
    )
    add_config_args(parser)
    parser.add_argument(
        "--topology", required=True, help="e.g. v4-8, v5e-16, v5p-8, v6e-8 (see module doc)"
    )
    parser.add_argument("--json", action="store_true", help="end with one line of JSON")
    parser.add_argument(
        "--no-projection",
        action="store_true",
        help="only compile for memory; skip the step-time probes",
    )
    parser.add_argument(
        "--program",
        choices=("train", "sample"),
        default="train",
        help="the train step (default) or the best-of-N sampler's batch (tinygsm_jax.aot_sampler)",
    )
    sample = parser.add_argument_group("--program sample")
    sample.add_argument("--n", type=int, default=48, help="samples per question [48]")
    sample.add_argument("--questions-per-batch", type=int, default=8, help="[8]")
    sample.add_argument("--max-new-tokens", type=int, default=256, help="[256]")
    sample.add_argument(
        "--prompt-len",
        type=int,
        default=256,
        help="prompt tokens (bucketed as the sampler does) [256]",
    )
    args, overrides = parser.parse_known_args(argv)
    topo = parse_topology(args.topology)  # bad names fail before the config is even loaded
    ensure_libtpu()
    config = load_config(args.config, overrides)
    if args.program == "sample":
        from tinygsm_jax import aot_sampler

        report = {"config": args.config, **aot_sampler.analyze_sampler(
            config, topo.name, n=args.n, questions_per_batch=args.questions_per_batch,
            max_new_tokens=args.max_new_tokens, prompt_len=args.prompt_len,
            project=not args.no_projection)}  # fmt: skip
        print(aot_sampler.format_report(report))
    else:
        report = {
            "config": args.config,
            **analyze(config, topo.name, project=not args.no_projection),
        }
        print(format_report(report))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    if not report["fits"] and args.program == "sample":
        print(
            f"does not fit: {report['questions_per_batch']} questions x {args.n} samples need "
            f"{gib(report['peak_bytes_per_chip'])} per chip, {topo.name} has {gib(report['hbm_bytes_per_chip'])}; "
            f"largest batch that fits: {report['max_questions_per_batch']} questions",
            file=sys.stderr,
        )
        return 1
    if not report["fits"]:
        over = report["peak_bytes_per_chip"] - report["hbm_bytes_per_chip"]
        print(
            f"does not fit: needs {gib(report['peak_bytes_per_chip'])} per chip, {topo.name} has "
            f"{gib(report['hbm_bytes_per_chip'])} ({gib(over)} over); try a smaller "
            "--config.train.micro_batch, --config.model.remat=true or more chips",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only: never probe for a local TPU
    run_main(main)
