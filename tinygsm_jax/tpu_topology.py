"""What the ahead-of-time compiles (`tinygsm_jax.aot`, `tinygsm_jax.aot_sampler`) share.

Cloud TPU slices (`parse_topology`: chips, grid, published per-chip figures and prices) and
libtpu's compile-only devices for them (`topology_devices`); reading a compiled program's memory
(`memory_per_chip`, or the TPU compiler's out-of-memory message: `oom_bytes`); and what the cost
probes compile with (`unrolled_scans`, `PROBE_COMPILER_OPTIONS`). Both programs import these
from here; neither imports the other's helpers.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import math
import os
import re
from collections.abc import Iterator
from typing import Any

from tinygsm_jax.cli import UserError

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


def ensure_libtpu() -> None:
    if importlib.util.find_spec("libtpu") is None and not os.environ.get("TPU_LIBRARY_PATH"):
        raise UserError(
            "libtpu is not installed, so TPU programs cannot be compiled here; install the tpu extra: "
            "pip install -e '.[tpu]'"
        )


def topology_devices(topo: Topology) -> list:
    """libtpu's compile-only devices for the slice (one per chip; v4 in megacore mode)."""
    ensure_libtpu()
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
def unrolled_scans() -> Iterator[None]:
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


# The TPU compiler's out-of-memory messages, e.g. "the total memory required for HLO temporaries
# (426.59G) exceeds available HBM (15.75G)" or "Used 20.1G of 15.7G hbm" (binary units).
_OOM = (
    re.compile(r"memory required for [^(]*\(([\d.]+)([KMGT]?)i?B?\)", re.IGNORECASE),
    re.compile(r"Used ([\d.]+)([KMGT]?)i?B? of [\d.]+[KMGT]?i?B? hbm", re.IGNORECASE),
)


def oom_bytes(message: str) -> int | None:
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


def gib(n: float) -> str:
    return f"{n / GiB:.2f} GiB"
