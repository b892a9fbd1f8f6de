"""Device mesh (data, fsdp, tensor), logical axis rules, and multi-host start-up.

Parameters and activations name their axes logically (`embed`, `mlp`, `heads`, ...); one small
rules table maps each name to mesh axes, in the spirit of t5x's standard rules. A logical axis
whose mesh axes are already taken by an earlier dimension of the same array, or whose size
does not divide, is replicated instead; so activations `(batch, length, embed)` shard batch
over data x fsdp while the parameters' `embed` dimension shards over fsdp (ZeRO-3 style).
"""

from __future__ import annotations

import argparse
import contextlib
import contextvars
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from tinygsm_jax.cli import UserError

MESH_AXES = ("data", "fsdp", "tensor")

# logical axis -> mesh axes (a name, a tuple of names, or None = replicated).
LOGICAL_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("layers", None),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv", None),
    ("mlp", "tensor"),
)

_ACTIVE: contextvars.ContextVar[tuple[Mesh, tuple] | None] = contextvars.ContextVar(
    "tinygsm_mesh", default=None
)


def mesh_shape(data: int, fsdp: int, tensor: int, n_devices: int) -> tuple[int, int, int]:
    """Resolve -1 entries (at most one) so the product equals `n_devices`; UserError if impossible."""
    dims = [int(data), int(fsdp), int(tensor)]
    if sum(d == -1 for d in dims) > 1:
        raise UserError(f"mesh {dict(zip(MESH_AXES, dims))}: at most one axis may be -1")
    if any(d == 0 or d < -1 for d in dims):
        raise UserError(f"mesh {dict(zip(MESH_AXES, dims))}: sizes must be positive or -1")
    known = math.prod(d for d in dims if d != -1)
    if n_devices % known:
        raise UserError(
            f"mesh {dict(zip(MESH_AXES, dims))} does not divide the {n_devices} available devices"
        )
    dims = [n_devices // known if d == -1 else d for d in dims]
    if math.prod(dims) != n_devices:
        raise UserError(
            f"mesh {dict(zip(MESH_AXES, dims))} uses {math.prod(dims)} devices but {n_devices} are available"
        )
    return tuple(dims)


def make_mesh(
    data: int = -1, fsdp: int = 1, tensor: int = 1, devices: Sequence[Any] | None = None
) -> Mesh:
    """A (data, fsdp, tensor) mesh over `devices` (default: all devices of all processes)."""
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(data, fsdp, tensor, len(devices))
    try:
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(shape, devices=devices)
    except (ValueError, NotImplementedError, AssertionError):
        grid = np.asarray(devices).reshape(shape)
    return Mesh(grid, MESH_AXES)


def logical_to_spec(
    axes: Sequence[str | None],
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
    rules: Sequence[tuple[str, Any]] = LOGICAL_RULES,
) -> PartitionSpec:
    """Map logical axis names to a PartitionSpec (first use of a mesh axis wins; sizes must divide)."""
    table = dict(rules)
    used: set[str] = set()
    out = []
    for i, name in enumerate(axes):
        target = table.get(name) if name is not None else None
        names = (target,) if isinstance(target, str) else tuple(target or ())
        names = tuple(n for n in names if n not in used)
        if mesh is not None:
            names = tuple(n for n in names if mesh.shape[n] > 1)
            if shape is not None and names and shape[i] % math.prod(mesh.shape[n] for n in names):
                names = ()
        used.update(names)
        out.append(None if not names else names[0] if len(names) == 1 else names)
    return PartitionSpec(*out)


@contextlib.contextmanager
def use_mesh(mesh: Mesh, rules: Sequence[tuple[str, Any]] = LOGICAL_RULES) -> Iterator[Mesh]:
    """Make `constrain` annotate activations for `mesh` while tracing inside this block."""
    token = _ACTIVE.set((mesh, tuple(rules)))
    try:
        yield mesh
    finally:
        _ACTIVE.reset(token)


def constrain(x: jax.Array, axes: Sequence[str | None]) -> jax.Array:
    """Sharding constraint by logical names; a no-op outside `use_mesh`."""
    active = _ACTIVE.get()
    if active is None:
        return x
    mesh, rules = active
    spec = logical_to_spec(axes, x.shape, mesh, rules)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def _is_var(x: Any) -> bool:
    return isinstance(x, nnx.Variable)


def logical_axes(state: nnx.State) -> dict:
    """The `axes` metadata of every parameter, as a pure dict shaped like `nnx.to_pure_dict(state)`."""
    tree = jax.tree.map(lambda v: v.get_metadata().get("axes"), state, is_leaf=_is_var)
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


def state_shardings(state: nnx.State, mesh: Mesh) -> dict:
    """NamedShardings for a model state, as a pure dict shaped like `nnx.to_pure_dict(state)`."""

    def one(v):
        axes = v.get_metadata().get("axes") or (None,) * len(v.value.shape)
        return NamedSharding(mesh, logical_to_spec(axes, v.value.shape, mesh))

    tree = jax.tree.map(one, state, is_leaf=_is_var)
    return nnx.to_pure_dict(tree) if isinstance(tree, nnx.State) else tree


def bytes_per_device(shapes: Any, shardings: Any) -> int:
    """Bytes one device holds of arrays with these shapes (ShapeDtypeStruct/arrays) and shardings."""
    total = 0
    for x, s in zip(jax.tree.leaves(shapes), jax.tree.leaves(shardings)):
        shard = s.shard_shape(x.shape)
        total += math.prod(shard) * np.dtype(x.dtype).itemsize
    return total


def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
) -> None:
    """Join a multi-process run: explicit flags (CPU/GPU clusters) or automatic on TPU pods.

    Call before anything touches a device. On CPU the collectives go through gloo. With one
    process and no flags (and not on a multi-host TPU slice) this does nothing.
    """
    multi_host_tpu = "," in os.environ.get("TPU_WORKER_HOSTNAMES", "")
    if not (coordinator_address or (num_processes or 1) > 1 or multi_host_tpu):
        return
    if _distributed_initialized():  # e.g. train's in-loop eval, or several CLIs in one process
        return
    if coordinator_address is None and not multi_host_tpu:
        raise UserError("--num-processes > 1 needs --coordinator-address HOST:PORT")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )


def _distributed_initialized() -> bool:
    is_init = getattr(jax.distributed, "is_initialized", None)
    if is_init is not None:
        return bool(is_init())
    from jax._src import distributed

    return distributed.global_state.client is not None


def add_distributed_args(parser: argparse.ArgumentParser) -> None:
    """The multi-process flags every device-using CLI takes (train, eval, verifier_data, sample)."""
    g = parser.add_argument_group(
        "multi-process (automatic on a multi-host TPU slice; give all three elsewhere)"
    )
    g.add_argument("--coordinator-address", help="HOST:PORT of process 0")
    g.add_argument("--num-processes", type=int, help="number of processes in the run")
    g.add_argument("--process-id", type=int, help="this process's index in the run")


def initialize_from_args(args: argparse.Namespace) -> None:
    """`initialize_distributed` from the flags of `add_distributed_args`."""
    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)


def is_lead() -> bool:
    """Process 0: the one that executes programs and writes files in a multi-process run."""
    return jax.process_index() == 0


def sync(name: str) -> None:
    """Every process waits here for the others (a no-op with one process).

    Used where process 0 alone writes: the others must not exit (or read) before it is done.
    """
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast_from_lead(x: np.ndarray) -> np.ndarray:
    """Process 0's value of a small host array, on every process (so all hosts agree)."""
    if jax.process_count() == 1:
        return x
    from jax.experimental import multihost_utils

    return np.asarray(multihost_utils.broadcast_one_to_all(x))


def allgather_json(obj: Any) -> list:
    """Every process's JSON-able `obj`, in process order (`[obj]` with one process).

    Small host values only (a data position, a restore's outcome): one padded byte row per
    process through `process_allgather`, which is a device collective, not a deadline barrier.
    """
    if jax.process_count() == 1:
        return [obj]
    import json

    from jax.experimental.multihost_utils import process_allgather

    blob = np.frombuffer(json.dumps(obj).encode(), np.uint8)
    lengths = np.asarray(process_allgather(np.array([blob.size]))).ravel()
    rows = np.asarray(process_allgather(np.pad(blob, (0, int(lengths.max()) - blob.size))))
    return [json.loads(bytes(r[:n]).decode()) for r, n in zip(rows, lengths)]


def lead_json(obj: Any) -> Any:
    """Process 0's JSON-able `obj` on every process (each passes its own; only 0's is kept)."""
    return allgather_json(obj)[0]
