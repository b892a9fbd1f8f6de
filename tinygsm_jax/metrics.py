"""Training metrics: an append-only `metrics.jsonl`, TensorBoard event files, and honest MFU.

Every line of `metrics.jsonl` is one JSON object with an `event` key:
- `"run"`: written first by every run (and every resumed run): what it runs on and how big;
- `"step"`: one per logged step (`step` counted from 1);
- `"eval"`: accuracy during training (`eval_accuracy`, `eval_seconds`, ...; `tinygsm_jax.train_eval`);
- `"summary"`: written when a run ends (finished, preempted or out of data).
Lines are flushed one by one, so a killed run leaves every line it logged, whole.

MFU = achieved training FLOP/s / peak FLOP/s. Achieved FLOPs per token come from
`model.flops_per_token` (6N plus attention, written down there). Peak FLOP/s per device
comes from `PEAK_FLOPS` (dense bf16 figures of the vendors' data sheets, per JAX device) on
accelerators; on CPU there is no data sheet to trust, so it is *measured* once per run with a
float32 matmul on this host, and the header says which source was used.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tinygsm_jax.cli import as_path

# Peak dense bf16 FLOP/s per JAX device, by `device.device_kind` prefix (longest match wins).
PEAK_FLOPS: dict[str, float] = {
    "TPU v2": 22.5e12,  # per core (a JAX device is one core on v2/v3)
    "TPU v3": 61.5e12,
    "TPU v4": 275e12,
    "TPU v5 lite": 197e12,  # v5e
    "TPU v5e": 197e12,
    "TPU v5p": 459e12,
    "TPU v5": 459e12,
    "TPU v6 lite": 918e12,  # v6e (Trillium)
    "TPU v6e": 918e12,
    "NVIDIA A100": 312e12,
    "NVIDIA H100": 989e12,
    "NVIDIA H200": 989e12,
    "NVIDIA B200": 2250e12,
}


def measure_cpu_flops(n: int = 1024, repeats: int = 5) -> float:
    """Best observed float32 matmul FLOP/s of this host (one jitted n x n x n matmul)."""
    a = jnp.ones((n, n), jnp.float32)
    f = jax.jit(lambda x: x @ x)
    f(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        f(a).block_until_ready()
        best = min(best, time.perf_counter() - t)
    return 2.0 * n**3 / best


def peak_flops(devices: list | None = None) -> tuple[float, str]:
    """(peak FLOP/s of all `devices` together, where the figure comes from)."""
    devices = list(devices if devices is not None else jax.devices())
    kind = devices[0].device_kind
    if devices[0].platform == "cpu":
        # Fake CPU devices share the host's cores: the peak is per process, not per device.
        per_process = measure_cpu_flops()
        return (
            per_process * jax.process_count(),
            f"measured float32 matmul on this CPU host x {jax.process_count()} process(es)",
        )
    matches = [k for k in PEAK_FLOPS if kind.startswith(k)]
    if not matches:
        return float("nan"), f"unknown device kind {kind!r}: no peak figure, MFU not reported"
    best = max(matches, key=len)
    return PEAK_FLOPS[best] * len(
        devices
    ), f"data sheet dense bf16 peak of {best} x {len(devices)} devices"


class MetricsWriter:
    """metrics.jsonl plus TensorBoard; a no-op on every process but process 0."""

    def __init__(self, workdir: str | Path, enabled: bool = True):
        self.enabled = enabled
        self._file = None
        self._tb = None
        if not enabled:
            return
        workdir = as_path(workdir)  # gs:// too: appended through tf.io.gfile
        workdir.mkdir(parents=True, exist_ok=True)
        self._file = (workdir / "metrics.jsonl").open("a", encoding="utf-8")  # noqa: SIM115
        from tensorboardX import SummaryWriter  # gs:// needs google-cloud-storage (tpu extra)

        try:
            self._tb = SummaryWriter(str(workdir / "tensorboard"))
        except Exception as e:  # e.g. no GCS client or credentials: metrics.jsonl still has it all
            print(f"warning: TensorBoard logging off ({type(e).__name__}: {e})", file=sys.stderr)

    def write(self, event: str, **fields: Any) -> None:
        if not self.enabled:
            return
        row = {"event": event, **{k: _plain(v) for k, v in fields.items()}}
        self._file.write(json.dumps(row, sort_keys=False) + "\n")
        self._file.flush()
        if event in ("step", "eval") and self._tb is not None:
            for k, v in row.items():
                if (
                    k not in ("event", "step", "time")
                    and isinstance(v, (int, float))
                    and np.isfinite(v)
                ):
                    tag = f"train/{k}" if event == "step" else f"eval/{k.removeprefix('eval_')}"
                    self._tb.add_scalar(tag, v, row["step"])

    def close(self) -> None:
        if self.enabled:
            self._file.close()
            if self._tb is not None:
                self._tb.close()


def _plain(v: Any) -> Any:
    """JSON-friendly: numpy/jax scalars to Python numbers."""
    if isinstance(v, (np.generic, np.ndarray, jax.Array)):
        v = np.asarray(v).item()
    if isinstance(v, float) and not np.isfinite(v):
        return None
    return v
