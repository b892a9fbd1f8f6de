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
import dataclasses
import functools
import importlib.util
import json
import math
import os
import re
import sys
import time
from collections.abc import Iterator
from typing import Any

from tinygsm_jax.cli import UserError, run_main
from tinygsm_jax.config import add_config_args, load_config

GiB = 2**30


@dataclasses.dataclass(frozen=True)
class Chip:
    """Published figures for one TPU generation (Cloud TPU system-architecture pages)."""

    generation: str  # our name and the prefix libtpu's topology names use: v4, v5e, v5p, v6e
    cloud_prefix: str  # gcloud accelerator-type prefix: v4, v5litepod, v5p, v6e
    cores_per_chip: int  # TensorCores per chip; the Cloud TPU name counts cores for v4 and v5p
    dims: int  # 3D torus (v4, v5p) or 2D (v5e, v6e)
    hbm_bytes: int
    peak_bf16_flops: float  # per chip
    hbm_bytes_per_s: float  # per chip
    usd_per_chip_hour: float  # on-demand list price, us-central regions, as of 2025
    sizes: tuple[int, ...]  # the numbers in the names we know (cores for v4/v5p, chips otherwise)


# fmt: off
CHIPS: dict[str, Chip] = {
    c.generation: c
    for c in (
        Chip("v4", "v4", 2, 3, 32 * GiB, 275e12, 1.2e12, 3.22, (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)),
        Chip("v5e", "v5litepod", 1, 2, 16 * GiB, 197e12, 0.819e12, 1.20, (1, 4, 8, 16, 32, 64, 128, 256)),
        Chip("v5p", "v5p", 2, 3, 95 * GiB, 459e12, 2.765e12, 4.20, (8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)),
        Chip("v6e", "v6e", 1, 2, 32 * GiB, 918e12, 1.64e12, 2.70, (1, 4, 8, 16, 32, 64, 128, 256)),
    )
}
# fmt: on
PRICES_AS_OF = "2025"


@dataclasses.dataclass(frozen=True)
class Topology:
    name: str  # e.g. v5e-16
    chip: Chip
    chips: int
    shape: tuple[int, ...]  # physical chip grid, e.g. (4, 4) or (2, 2, 1)

    @property
    def accelerator_type(self) -> str:
        """The gcloud `--accelerator-type` of this slice (v5e is sold as v5litepod)."""
        return f"{self.chip.cloud_prefix}-{self.chips * self.chip.cores_per_chip}"

    @property
    def libtpu_name(self) -> str:
        return f"{self.chip.generation}:{'x'.join(map(str, self.shape))}"


def _grid(chips: int, dims: int) -> tuple[int, ...]:
    """Cloud TPU's slice shapes: 2D 4x4, 4x8, ...; 3D from 2x2x1 doubling the last smallest side."""
    if dims == 2:
        a = 2 ** (int(math.log2(chips)) // 2)
        return (a, chips // a)
    shape = [2, 2, 1] if chips >= 4 else [chips, 1, 1]
    while math.prod(shape) < chips:
        smallest = min(shape)
        i = max(j for j, s in enumerate(shape) if s == smallest)
        shape[i] *= 2
    return tuple(shape)


def known_topologies() -> list[str]:
    return [f"{c.generation}-{n}" for c in CHIPS.values() for n in c.sizes]


def parse_topology(name: str) -> Topology:
    """`v5e-16` (or `v5litepod-16`, `v4-32`, ...) -> chips and grid; UserError listing known names."""
    m = re.fullmatch(r"(v4|v5e|v5litepod|v5p|v6e)-(\d+)", name.strip().lower())
    gen = {"v5litepod": "v5e"}.get(m.group(1), m.group(1)) if m else None
    if not m or int(m.group(2)) not in CHIPS[gen].sizes:
        raise UserError(f"unknown topology {name!r}; known: {', '.join(known_topologies())}")
    chip, n = CHIPS[gen], int(m.group(2))
    chips = n // chip.cores_per_chip
    return Topology(f"{gen}-{n}", chip, chips, _grid(chips, chip.dims))


def _ensure_libtpu() -> None:
    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        raise UserError(
            "libtpu is not installed, so TPU programs cannot be compiled here; install the tpu extra: "
            "pip install -e '.[tpu]'"
        )


def topology_devices(topo: Topology) -> list:
    """libtpu's compile-only devices for the slice (one per chip; v4 in megacore mode)."""
    _ensure_libtpu()
    if os.environ.get("JAX_PLATFORMS", "") == "cpu":
        # No TPU here: tell libtpu what it would otherwise ask the (absent) metadata server for.
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", topo.accelerator_type)
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
        os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")
        # Compile-only: several processes (tests, benchmarks) may load libtpu at once.
        os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    from jax.experimental import topologies

    kwargs = {"chip_config_name": "megacore"} if topo.chip.generation == "v4" else {}
    desc = topologies.get_topology_desc(topology_name=topo.libtpu_name, platform="tpu", **kwargs)
    devices = list(desc.devices)
    if len(devices) != topo.chips:
        raise RuntimeError(
            f"libtpu gave {len(devices)} devices for {topo.name}, expected {topo.chips}"
        )
    return devices


@contextlib.contextmanager
def _unrolled_scans() -> Iterator[None]:
    """Trace with every `jax.lax.scan` fully unrolled, so XLA's cost analysis sees each iteration."""
    import jax

    original = jax.lax.scan

    @functools.wraps(original)
    def scan(*args, **kwargs):
        kwargs["unroll"] = True
        return original(*args, **kwargs)

    jax.lax.scan = scan
    try:
        yield
    finally:
        jax.lax.scan = original


def _compile(config, devices, unroll: bool = False, options: dict | None = None):
    from tinygsm_jax import sharding
    from tinygsm_jax.train_step import build_train_step

    mesh = sharding.make_mesh(
        config.mesh.data, config.mesh.fsdp, config.mesh.tensor, devices=devices
    )
    with _unrolled_scans() if unroll else contextlib.nullcontext():
        fn, args = build_train_step(config, mesh)
        lowered = fn.lower(*args)
    return lowered.compile(compiler_options=options), mesh


# The TPU compiler's out-of-memory messages, e.g. "the total memory required for HLO temporaries
# (426.59G) exceeds available HBM (15.75G)" or "Used 20.1G of 15.7G hbm" (binary units).
_OOM = (
    re.compile(r"memory required for [^(]*\(([\d.]+)([KMGT]?)i?B?\)", re.IGNORECASE),
    re.compile(r"Used ([\d.]+)([KMGT]?)i?B? of [\d.]+[KMGT]?i?B? hbm", re.IGNORECASE),
)


def _oom_bytes(message: str) -> int | None:
    """The HBM the TPU compiler says the program needs (at least), from its out-of-memory error."""
    if "RESOURCE_EXHAUSTED" not in message and "out of memory" not in message.lower():
        return None
    for pattern in _OOM:
        m = pattern.search(message)
        if m:
            scale = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}[m.group(2).upper()]
            return int(float(m.group(1)) * scale)
    return None


def memory_per_chip(stats: Any) -> tuple[int, dict[str, int]]:
    """(peak bytes per chip, breakdown) from `Compiled.memory_analysis()`."""
    parts = {
        "arguments": int(stats.argument_size_in_bytes),
        "outputs": int(stats.output_size_in_bytes),
        "temps": int(stats.temp_size_in_bytes),
        "aliased": int(stats.alias_size_in_bytes),
        "code": int(stats.generated_code_size_in_bytes),
    }
    peak = int(getattr(stats, "peak_memory_in_bytes", 0) or 0)
    if peak <= 0:
        peak = (
            parts["arguments"]
            + parts["outputs"]
            + parts["temps"]
            - parts["aliased"]
            + parts["code"]
        )
    return peak, parts


# Probes only: XLA's windowed einsum (collective matmul over the fsdp axis) is also a loop
# whose body the cost analysis would count once; without it the same FLOPs are plain matmuls.
PROBE_COMPILER_OPTIONS = {
    "xla_tpu_enable_windowed_einsum_for_all_gather": False,
    "xla_tpu_enable_windowed_einsum_for_reduce_scatter": False,
}


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
        need = _oom_bytes(str(e))
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


def _gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"


def format_report(r: dict) -> str:
    lines = [
        f"{r['config']} on {r['topology']} ({r['accelerator_type']}: {r['chips']} chips)",
        f"  parameters       {r['n_params']:,}",
        f"  mesh             {r.get('mesh', '-')}   batch {r['global_batch']} x {r['seq_len']} "
        f"(micro-batch {r['micro_batch']}), {r['compute_dtype']}",
        f"  memory per chip  {_gib(r['peak_bytes_per_chip'])} of {_gib(r['hbm_bytes_per_chip'])} HBM"
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
    _ensure_libtpu()
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
            f"{_gib(report['peak_bytes_per_chip'])} per chip, {topo.name} has {_gib(report['hbm_bytes_per_chip'])}; "
            f"largest batch that fits: {report['max_questions_per_batch']} questions",
            file=sys.stderr,
        )
        return 1
    if not report["fits"]:
        over = report["peak_bytes_per_chip"] - report["hbm_bytes_per_chip"]
        print(
            f"does not fit: needs {_gib(report['peak_bytes_per_chip'])} per chip, {topo.name} has "
            f"{_gib(report['hbm_bytes_per_chip'])} ({_gib(over)} over); try a smaller "
            "--config.train.micro_batch, --config.model.remat=true or more chips",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")  # compile-only: never probe for a local TPU
    run_main(main)
