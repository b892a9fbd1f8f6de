"""Ahead-of-time compile of the best-of-N sampler for a Cloud TPU slice, on a machine without one.

    python -m tinygsm_jax.aot --program sample --config configs/phi1_5.py --topology v5e-16 \\
        --n 48 --questions-per-batch 8 --max-new-tokens 256 [--prompt-len 256] [--json]

Builds the exact program `tinygsm_jax.sampler.Sampler` runs for one batch (prefill, then the
decode loops; parameters as eval and verifier_data hold them: float32, computed in bfloat16)
over libtpu's compile-only devices, data-parallel over every chip as `tinygsm_jax.eval` does,
and reports:

- `peak_bytes_per_chip`: the compiler's `memory_analysis()` of that program (parameters, the
  prompts' shared cache, the generated tokens' cache, logits and temporaries), against the
  chip's HBM for `fits`. `param_bytes_per_chip` and `kv_cache_bytes_per_chip` break it down.
- `max_questions_per_batch`: the largest batch that fits, from the compiler's peak at two
  batch sizes (memory is affine in the batch: parameters and code plus a per-question part),
  rounded down to a size the sampler accepts.
- `projected_step_seconds`: the mean decode step's roofline, max(FLOPs / peak bf16 FLOP/s,
  bytes accessed / HBM bandwidth) per chip, from XLA's `cost_analysis()`. XLA counts a
  while-loop body once whatever its trip count, so the decode step is compiled on its own
  (`sampler._sample_parts`), its inputs sharded as the loop's carry is, every layer
  unrolled: for the first and the last cache block (a step into block j reads blocks 0..j, so
  its cost is affine in j). The prefill is probed with 1 and 2 layers and extrapolated
  linearly, as for training (1- and 2-layer decode steps do not extrapolate: XLA fuses the
  parameters' casts differently). Inter-chip communication is not modelled
  (the decode has none but the loop's "all done?" test), so this is a lower bound on time.
- `projected_tokens_per_second`: generated token slots per second of the whole slice, every
  sample running all `max_new_tokens` steps (the loop stops once all samples of a batch have
  stopped, so real batches can be shorter: these are upper bounds on time).
- `verifier_data_hours` / `eval_hours` and their on-demand cost: the paper's jobs (module
  constants below) at this batch size: verifier data = 7,473 GSM8K train questions x n samples
  x 3 checkpoints x 2 temperatures; eval = 1,319 GSM8K test questions x n samples plus the
  greedy pass (its own program: one row per question). Sandbox execution is not counted (it
  runs on the host CPUs: ~1,000 programs/s on 2 cores, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import contextlib
import math
import re
import time
from typing import Any

from tinygsm_jax.cli import UserError
from tinygsm_jax.tpu_topology import (
    PROBE_COMPILER_OPTIONS,
    gib,
    memory_per_chip,
    oom_bytes,
    parse_topology,
    topology_devices,
    unrolled_scans,
)

VERIFIER_DATA_JOB = {"questions": 7473, "checkpoints": 3, "temperatures": 2}
EVAL_JOB = {"questions": 1319}


def _program(
    config, mesh, n_layers: int | None, Q: int, n: int, max_new: int, P: int, part: str | int
):
    """(jitted fn, abstract args, model cfg) for one sampler batch.

    `part`: "all" (the sampler's program), "prefill", or an int j: one decode step into cache
    block j, its inputs sharded as the loop's carry is (rows over the data axis).
    """
    import jax
    import numpy as np
    from flax import nnx
    from jax.sharding import NamedSharding, PartitionSpec

    from tinygsm_jax.model import Phi
    from tinygsm_jax.sampler import ProgramSpec, _sample_parts, _sample_program
    from tinygsm_jax.sharding import state_shardings
    from tinygsm_jax.train_step import model_config

    cfg = model_config(config, mesh)
    if n_layers is not None:
        cfg = cfg.replace(n_layers=n_layers)
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    shardings = state_shardings(state, mesh)
    pure = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
        nnx.to_pure_dict(state),
        shardings,
    )
    nnx.replace_by_pure_dict(state, pure)
    shards = mesh.shape["data"] * mesh.shape["fsdp"]
    divides = (Q * n) % shards == 0
    rows = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    rep = NamedSharding(mesh, PartitionSpec())
    spec = ProgramSpec(
        cfg, graphdef, n, max_new, 0, False, True, cfg.vocab_size, rows if divides else None
    )

    def arg(shape, dtype):
        return jax.ShapeDtypeStruct(shape, np.dtype(dtype), sharding=rep)

    args = (
        state,
        arg((Q, P), np.int32),  # tokens
        arg((Q, P), np.int32),  # positions
        arg((Q, P), np.int32),  # segments
        arg((Q,), np.int32),  # prompt lengths
        arg((Q,), np.int32),  # question ids
        arg((Q,), bool),  # active
        arg((), np.uint32),  # seed
        arg((), np.float32),  # temperature
        arg((), np.float32),  # top_p
        arg((cfg.vocab_size, 4), np.int8),  # function-end tables
        arg((), np.int32),  # eos
        arg((), np.int32),  # pad
    )
    if part == "all":
        return _sample_program(spec), args, cfg
    prefill, step = _sample_parts(spec)
    if part == "prefill":
        return jax.jit(prefill), args, cfg
    B = Q * n

    def placed(x, path):
        # Sample rows (leading dimension B; axis 1 of the [layers, B, ...] cache blocks) are
        # sharded over the data axis in the loop; the prompts' cache and scalars are replicated.
        name = jax.tree_util.keystr(path)
        axis = 1 if "blocks" in name else 0
        spec = [None] * len(x.shape)
        if divides and "prefix" not in name and len(x.shape) > axis and x.shape[axis] == B:
            spec[axis] = ("data", "fsdp")
        return jax.ShapeDtypeStruct(
            x.shape, x.dtype, sharding=NamedSharding(mesh, PartitionSpec(*spec))
        )

    ctx, carry = jax.tree_util.tree_map_with_path(
        lambda path, x: placed(x, path), jax.eval_shape(prefill, *args)
    )
    j = int(part)
    return jax.jit(lambda s, c, k: step(s, c, k, j)), (state, ctx, carry), cfg


def _compile(config, mesh, Q, n, max_new, P, n_layers=None, part="all", unroll=False):
    from tinygsm_jax.sharding import use_mesh

    fn, args, cfg = _program(config, mesh, n_layers, Q, n, max_new, P, part)
    with use_mesh(mesh), unrolled_scans() if unroll else contextlib.nullcontext():
        lowered = fn.lower(*args)
    options = PROBE_COMPILER_OPTIONS if unroll else None
    return lowered.compile(compiler_options=options), cfg


def peak_bytes(config, mesh, Q, n, max_new, P) -> tuple[int, dict, bool]:
    """(peak bytes per chip, breakdown, compiled) of one batch; an HBM overflow gives its lower bound."""
    try:
        compiled, _ = _compile(config, mesh, Q, n, max_new, P)
    except Exception as e:  # the TPU compiler refuses programs that overflow HBM
        need = oom_bytes(str(e))
        if need is None:
            raise
        return need, {"compiler_error": str(e).strip().splitlines()[0][:300]}, False
    peak, parts = memory_per_chip(compiled.memory_analysis())
    return peak, parts, True


def _cost(compiled) -> tuple[float, float, int]:
    ca = compiled.cost_analysis()
    ca = ca[0] if isinstance(ca, (list, tuple)) else ca
    loops = len(re.findall(r"\bwhile\(", compiled.as_text()))
    return float(ca.get("flops", 0.0)), float(ca.get("bytes accessed", 0.0)), loops


def decode_costs(config, mesh, Q, n, max_new, P, first_block_only: bool = False) -> dict:
    """Per chip: prefill and mean decode-step (flops, bytes) from probes (module doc).

    A step into block j reads blocks 0..j: its cost is affine in j, so the first and the last
    block's steps give every block's. The step probes have every layer (unrolled: XLA's bytes
    for 1- and 2-layer steps do not extrapolate, their fusions differ); the prefill, a small
    part of a batch, is probed with 1 and 2 layers and extrapolated. `first_block_only`: every
    step costs what the first block's does (for greedy batches of ~1 row per chip, whose cache
    reads are negligible next to the parameters').
    """
    from tinygsm_jax.sampler import _block_size

    C = _block_size(max_new)
    nb = -(-max_new // C)
    L = int(config.model.n_layers)

    def probe(part, layers):
        return _cost(_compile(config, mesh, Q, n, max_new, P, layers, part, unroll=True)[0])

    one, two = probe("prefill", 1), probe("prefill", 2)
    out = {
        "prefill_flops": one[0] + (L - 1) * (two[0] - one[0]),
        "prefill_bytes": one[1] + (L - 1) * (two[1] - one[1]),
    }
    first = probe(0, None)
    last = probe(nb - 1, None) if nb > 1 and not first_block_only else first
    for i, name in ((0, "flops"), (1, "bytes")):
        per_block = (last[i] - first[i]) / (nb - 1) if nb > 1 else 0.0
        total = sum(min(C, max_new - j * C) * (first[i] + j * per_block) for j in range(nb))
        out[f"step_{name}"] = total / max_new  # the mean step
    # Loops left in the probes would count their bodies once: an underestimate (want 0).
    out["extra_loops"] = max(p[2] for p in (one, two, first, last))
    return out


def _roofline(flops: float, nbytes: float, chip) -> tuple[float, str]:
    compute, memory = flops / chip.peak_bf16_flops, nbytes / chip.hbm_bytes_per_s
    return max(compute, memory), "compute" if compute >= memory else "memory"


def analyze_sampler(
    config,
    topology: str,
    *,
    n: int = 48,
    questions_per_batch: int = 8,
    max_new_tokens: int = 256,
    prompt_len: int = 256,
    project: bool = True,
) -> dict:
    """Compile the sampler's batch program for `topology`; the report `aot.main` prints."""
    from tinygsm_jax.model import count_params
    from tinygsm_jax.sampler import _block_size, _bucket, batch_questions
    from tinygsm_jax.sharding import bytes_per_device, make_mesh, state_shardings

    if config.model.head != "lm":
        raise UserError(
            f"--program sample needs a generator config (model.head=lm), got head={config.model.head!r}"
        )
    for name, v in (("--n", n), ("--questions-per-batch", questions_per_batch),
                    ("--max-new-tokens", max_new_tokens), ("--prompt-len", prompt_len)):  # fmt: skip
        if v < 1:
            raise UserError(f"{name} must be at least 1, got {v}")
    max_len = int(config.model.max_len)
    if prompt_len + max_new_tokens > max_len:
        raise UserError(
            f"--prompt-len {prompt_len} + --max-new-tokens {max_new_tokens} exceed model.max_len {max_len}"
        )
    P = _bucket(prompt_len, max_len - max_new_tokens)
    topo = parse_topology(topology)
    chip = topo.chip
    devices = topology_devices(topo)
    mesh = make_mesh(data=-1, fsdp=1, tensor=1, devices=devices)
    shards = mesh.shape["data"]
    Q = batch_questions(questions_per_batch, n, shards)
    t0 = time.perf_counter()
    peak, memory, compiled_ok = peak_bytes(config, mesh, Q, n, max_new_tokens, P)
    fn, args, cfg = _program(config, mesh, None, Q, n, max_new_tokens, P, "all")
    param_bytes = bytes_per_device(args[0], state_shardings(args[0], mesh))
    rows_per_chip = -(-Q * n // shards) if (Q * n) % shards == 0 else Q * n
    C = _block_size(max_new_tokens)
    slots = C * -(-max_new_tokens // C)
    per_row = 2 * cfg.n_layers * cfg.n_heads * cfg.head_dim * cfg.compute_dtype.itemsize
    kv_bytes = rows_per_chip * slots * per_row + Q * P * per_row  # generated + shared prompt
    report: dict[str, Any] = {
        "program": "sample",
        "topology": topo.name,
        "accelerator_type": topo.accelerator_type,
        "chips": topo.chips,
        "mesh": dict(mesh.shape),
        "n_params": count_params(cfg),
        "compute_dtype": cfg.compute_dtype.name,
        "n": n,
        "questions_per_batch": Q,
        "rows_per_batch": Q * n,
        "rows_per_chip": rows_per_chip,
        "max_new_tokens": max_new_tokens,
        "prompt_len": P,
        "hbm_bytes_per_chip": chip.hbm_bytes,
        "peak_bytes_per_chip": peak,
        "param_bytes_per_chip": param_bytes,
        "kv_cache_bytes_per_chip": kv_bytes,
        "memory": memory,
        "fits": compiled_ok and peak <= chip.hbm_bytes,
    }
    # The largest batch: memory is affine in the questions per batch; fit it on two sizes.
    step = shards // math.gcd(n, shards)
    other = step if Q > step else 2 * step
    peak2, _, ok2 = peak_bytes(config, mesh, other, n, max_new_tokens, P)
    if compiled_ok and ok2:
        per_q = (peak - peak2) / (Q - other)
        fixed = peak - per_q * Q
        if per_q > 0:  # tiny models: the per-question part drowns in the compiler's noise
            fit = int((chip.hbm_bytes - fixed) // per_q)
            report["max_questions_per_batch"] = max(0, fit // step * step)
        else:
            report["max_questions_per_batch"] = None
        report["bytes_per_question"] = int(per_q)
    else:
        small = peak2 if other < Q else peak
        report["max_questions_per_batch"] = None if small <= chip.hbm_bytes else 0
        report["bytes_per_question"] = None
    report["compile_seconds"] = round(time.perf_counter() - t0, 1)
    report.update(
        projected_step_seconds=None, projected_prefill_seconds=None, projected_batch_seconds=None,
        projected_tokens_per_second=None, bound=None, verifier_data_hours=None, eval_hours=None,
        verifier_data_cost_usd=None, eval_cost_usd=None, probe_extra_loops=None,
    )  # fmt: skip
    if project and report["fits"]:
        add_projection(report, config, mesh, questions_per_batch)
    report["analysis_seconds"] = round(time.perf_counter() - t0, 1)
    return report


def add_projection(report: dict, config, mesh, questions_per_batch: int) -> dict:
    """Fill the decode-time, throughput and job-cost fields of an `analyze_sampler` report."""
    from tinygsm_jax.sampler import batch_questions

    chip = parse_topology(report["topology"]).chip
    n, M, P, Q = report["n"], report["max_new_tokens"], report["prompt_len"], report["questions_per_batch"]  # fmt: skip

    def batch_seconds(q: int, n: int) -> tuple[float, dict, float, str]:
        c = decode_costs(config, mesh, q, n, M, P, first_block_only=n == 1)
        pre, _ = _roofline(c["prefill_flops"], c["prefill_bytes"], chip)
        step, bound = _roofline(c["step_flops"], c["step_bytes"], chip)
        return pre + M * step, c, step, bound

    batch_s, costs, step_s, bound = batch_seconds(Q, n)
    report.update(
        xla_step_flops_per_chip=costs["step_flops"],
        xla_step_bytes_per_chip=costs["step_bytes"],
        projected_step_seconds=step_s,
        projected_prefill_seconds=batch_s - M * step_s,
        projected_batch_seconds=batch_s,
        projected_tokens_per_second=Q * n * M / batch_s,
        bound=bound,
        probe_extra_loops=costs["extra_loops"],
    )
    runs = VERIFIER_DATA_JOB["checkpoints"] * VERIFIER_DATA_JOB["temperatures"]
    vd_s = runs * -(-VERIFIER_DATA_JOB["questions"] // Q) * batch_s
    q_greedy = batch_questions(questions_per_batch, 1, mesh.shape["data"])
    greedy_s, _, _, _ = batch_seconds(q_greedy, 1)
    eval_s = (
        -(-EVAL_JOB["questions"] // Q) * batch_s + -(-EVAL_JOB["questions"] // q_greedy) * greedy_s
    )
    price = report["chips"] * chip.usd_per_chip_hour
    report.update(
        greedy_questions_per_batch=q_greedy,
        projected_greedy_batch_seconds=greedy_s,
        verifier_data_hours=vd_s / 3600,
        eval_hours=eval_s / 3600,
        verifier_data_cost_usd=vd_s / 3600 * price,
        eval_cost_usd=eval_s / 3600 * price,
    )
    return report


def format_report(r: dict) -> str:
    maxq = r.get("max_questions_per_batch")
    lines = [
        f"{r['config']} sampler on {r['topology']} ({r['accelerator_type']}: {r['chips']} chips)",
        f"  parameters       {r['n_params']:,}",
        f"  batch            {r['questions_per_batch']} questions x {r['n']} samples = {r['rows_per_batch']} rows "
        f"({r['rows_per_chip']} per chip), prompt {r['prompt_len']} + {r['max_new_tokens']} new tokens, "
        f"{r['compute_dtype']}",
        f"  memory per chip  {gib(r['peak_bytes_per_chip'])} of {gib(r['hbm_bytes_per_chip'])} HBM"
        f"  -> {'fits' if r['fits'] else 'DOES NOT FIT'} (parameters {gib(r['param_bytes_per_chip'])}, "
        f"KV cache {gib(r['kv_cache_bytes_per_chip'])})",
        f"  largest batch    {maxq if maxq is not None else '?'} questions per batch",
    ]
    if r["projected_step_seconds"] is not None:
        lines += [
            f"  decode step      {1e3 * r['projected_step_seconds']:.2f} ms ({r['bound']}-bound roofline), "
            f"{r['projected_tokens_per_second']:,.0f} tokens/s over the slice",
            f"  verifier data    {r['verifier_data_hours']:.1f} h, ${r['verifier_data_cost_usd']:,.0f} "
            f"(7,473 x {r['n']} x 3 checkpoints x 2 temperatures)",
            f"  GSM8K eval       {r['eval_hours']:.2f} h, ${r['eval_cost_usd']:,.0f} (1,319 x {r['n']} + greedy)",
        ]
        if r["probe_extra_loops"]:
            lines.append(
                f"  warning          {r['probe_extra_loops']} extra loops in the cost probes: an underestimate"
            )
    lines.append(f"  compiled in      {r['analysis_seconds']:.0f} s")
    return "\n".join(lines)
