"""One self-describing checkpoint format, understood by every command (`--checkpoint DIR`).

Layout (a training workdir and an imported model look the same)::

    CKPT/model.json                  {"format", "model": ModelConfig fields, "objective"}
    CKPT/tokenizer/                  the Hugging Face tokenizer the model was trained with
    CKPT/checkpoints/<step>/params   orbax: the float32 parameters (pure dict of arrays)
    CKPT/checkpoints/<step>/meta     orbax JSON: step, model config, data position, RNG, ...
    CKPT/checkpoints/<step>/opt_state   (training workdirs only)

`--checkpoint` accepts CKPT (its latest finished step) or one step's directory. Every restore
gives orbax a target with the *current* devices' shardings, so a checkpoint written on any
topology (a pod slice, two CPU devices, two processes) loads on any other. orbax writes each
step into a temporary directory and renames it when complete: an interrupted save is never
listed. A listed step that cannot be read stops an inference command with one line naming it;
only training resume goes back to the step before it (a preemption mid-save), with a warning.
With several processes, process 0 picks the step and all of them restore that step.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from flax import nnx

from tinygsm_jax import sharding
from tinygsm_jax.cli import (
    UserError,
    as_path,
    atomic_path,
    atomic_write_json,
    copy_tree,
    is_remote,
)
from tinygsm_jax.model import ModelConfig, Phi

FORMAT = "tinygsm_jax.checkpoint/1"
HEAD_PARAMS = {"lm": ("lm_head_kernel", "lm_head_bias"), "value": ("value_kernel", "value_bias")}


@dataclasses.dataclass
class Loaded:
    """A model restored from a checkpoint, with what is needed to use it."""

    model: Phi
    config: ModelConfig
    tokenizer_dir: Path  # (an epath.Path for gs:// checkpoints, as is root)
    step: int
    root: Path
    meta: dict

    @property
    def step_dir(self) -> Path:
        """The directory of the step that was loaded (what a report names)."""
        return self.root / "checkpoints" / str(self.step)


def manager(
    root: str | Path, *, keep: int | None = 3, async_save: bool = True
) -> ocp.CheckpointManager:
    """The orbax CheckpointManager of a workdir (steps under `root/checkpoints`)."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=keep, enable_async_checkpointing=async_save, create=True
    )
    root = as_path(root)
    if not is_remote(root):
        root = root.absolute()
    return ocp.CheckpointManager(root / "checkpoints", options=options)


def write_model_info(
    root: str | Path,
    cfg: ModelConfig,
    objective: str,
    tokenizer_dir: str | Path,
    *,
    data: dict | None = None,
) -> None:
    """Write model.json and copy the tokenizer into `root` (process 0 only in multi-host runs).

    `data`: what the model's inputs were made with, that inference must make alike (a verifier's
    `execution_result`); stored under "data", absent in checkpoints written without it.
    """
    root = as_path(root)
    root.mkdir(parents=True, exist_ok=True)
    info = {"format": FORMAT, "model": cfg.to_dict(), "objective": objective}
    if data:
        info["data"] = data
    atomic_write_json(root / "model.json", info)
    src, dst = as_path(tokenizer_dir), root / "tokenizer"
    if _location(src) != _location(dst):
        with atomic_path(dst, is_dir=True) as tmp:
            copy_tree(src, tmp)


def _location(path: Path | epath.Path) -> str:
    return str(path) if is_remote(path) else str(Path(path).resolve())


def read_model_info(root: str | Path) -> dict:
    path = as_path(root) / "model.json"
    try:
        info = json.loads(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{root}: not a tinygsm_jax checkpoint (no model.json)") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{path}: not valid JSON ({e.msg})") from None
    if info.get("format") != FORMAT:
        raise UserError(f"{path}: unknown checkpoint format {info.get('format')!r}")
    return info


def resolve(path: str | Path) -> tuple[Path, int | None]:
    """(workdir root, step or None for 'latest') for a workdir or a step directory."""
    path = as_path(path)
    if not path.exists():
        raise UserError(f"{path}: no such checkpoint")
    if (path / "model.json").is_file():
        return path, None
    if path.name.isdigit() and (path.parent.parent / "model.json").is_file():
        return path.parent.parent, int(path.name)
    raise UserError(f"{path}: not a tinygsm_jax checkpoint (no model.json here or two levels up)")


def abstract_params(cfg: ModelConfig, shardings: Any = None) -> dict:
    """ShapeDtypeStructs of the model's parameters (pure dict), optionally with shardings."""
    state = jax.eval_shape(lambda: nnx.state(Phi(cfg, rngs=nnx.Rngs(0)), nnx.Param))
    tree = nnx.to_pure_dict(state)
    if shardings is None:
        return tree
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def finished_steps(root: str | Path) -> list[int]:
    """The steps orbax finished writing under `root/checkpoints`, oldest first (this process's view).

    A save cut short leaves a temporary directory (or, on object stores, no commit marker):
    orbax does not count it as a step, and neither does anything here.
    """
    d = as_path(root) / "checkpoints"
    if not d.is_dir():
        return []
    return sorted(
        int(p.name) for p in d.iterdir() if p.name.isdigit() and ocp.step.is_path_finalized(p)
    )


def latest_step(root: str | Path) -> int | None:
    """Process 0's latest finished step of `root`, on every process (None: no step yet)."""
    steps = finished_steps(root) if sharding.is_lead() else []
    return sharding.lead_json(steps[-1] if steps else None)


def choose_step(path: str | Path) -> tuple[Path, int]:
    """(workdir root, step) for a workdir (its latest finished step) or one step's directory.

    Process 0 decides and every process gets its answer, so all of them load one model.
    """
    root, step = resolve(path)
    if step is None:
        step = latest_step(root)
        if step is None:
            raise UserError(f"{root}: holds no finished checkpoint step")
        return root, step
    if not ocp.step.is_path_finalized(root / "checkpoints" / str(step)):
        raise UserError(
            f"{root}: step {step} is unfinished (orbax did not complete its save); "
            f"choose another step directory ({_steps_text(root)})"
        )
    return root, step


# tensorstore's status codes for a file it could not read (missing, short, undecodable).
_READ_STATUS = ("DATA_LOSS", "OUT_OF_RANGE", "NOT_FOUND", "UNAVAILABLE", "UNKNOWN")


def is_read_error(e: BaseException) -> bool:
    """True where a restore failed reading the step's own files (damage), not for any other reason.

    A `ValueError` about shardings or shapes is a bug to report, not a damaged step to skip.
    """
    if isinstance(e, (OSError, EOFError, json.JSONDecodeError)):
        return True
    text = str(e)
    if isinstance(e, KeyError):  # an item's directory is missing from the step
        return "was not found in the checkpoint" in text
    if isinstance(e, (ValueError, RuntimeError)):
        return text.startswith(tuple(f"{code}:" for code in _READ_STATUS)) or (
            "Found incomplete checkpoint" in text
        )
    return False


def _error_text(e: BaseException) -> str:
    text = str(e).strip().split("[tensorstore_spec=")[0].strip()
    first = text.splitlines()[0] if text else ""
    return f"{type(e).__name__}: {first[:300]}" if first else type(e).__name__


def _steps_text(root: Path, below: int | None = None) -> str:
    steps = [s for s in finished_steps(root) if below is None or s < below]
    if not steps:
        return "no other finished step is there"
    listed = ", ".join(map(str, steps[-5:]))
    return f"e.g. {root / 'checkpoints' / str(steps[-1])}; finished steps: {listed}"


def _ignore_late_read_callbacks() -> None:
    """Drop "Event loop is closed" from tensorstore reads that finish after orbax's loop did.

    When one array of a step fails to read, orbax's `asyncio.run` ends at once and the reads
    still in flight complete later into a closed loop; Python prints each as a traceback at
    exit, burying the one-line error. Only that exact RuntimeError is dropped.
    """
    previous = sys.unraisablehook
    if getattr(previous, "_tinygsm_quiet", False):
        return

    def hook(u: Any) -> None:
        e = u.exc_value
        if isinstance(e, RuntimeError) and str(e) == "Event loop is closed":
            return
        previous(u)

    hook._tinygsm_quiet = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


def _read_step(root: Path, step: int, items: dict[str, Any]) -> dict:
    """One step's `items`, read by this process alone.

    orbax's Checkpointer.restore ends in a barrier: a process that failed before it would leave
    the others waiting for its deadline. The handler reads without one; the processes then
    exchange their outcomes (`restore`).
    """
    _ignore_late_read_callbacks()
    handler = ocp.CompositeCheckpointHandler(*items)
    try:
        directory = epath.Path(str(root / "checkpoints" / str(step)))
        return dict(handler.restore(directory, args=ocp.args.Composite(**items)))
    finally:
        handler.close()


def restore(
    path: str | Path, items: dict[str, Any], *, fall_back: bool = False
) -> tuple[int, dict]:
    """Restore `items` (name -> orbax restore args, with target shardings) of one step.

    The step is the one `path` names, or the latest finished one (process 0's choice). Any
    failure is a UserError naming the step, raised on every process at once. `fall_back`
    (training resume only) goes back one step at a time past steps whose files cannot be read,
    with a warning naming both steps; any other error still stops.
    """
    root, step = choose_step(path)
    older: list[int] = []
    if fall_back:  # process 0's list: every process walks back through the same steps
        mine = finished_steps(root) if sharding.is_lead() else []
        older = sharding.lead_json([s for s in reversed(mine) if s < step])
    for s in [step, *older]:
        try:
            got, outcome = _read_step(root, s, items), None
        except Exception as e:  # reported below, on every process, once all have tried
            got, outcome = None, {"read": is_read_error(e), "error": _error_text(e)}
        outcomes = sharding.allgather_json(outcome)
        failed = [(i, o) for i, o in enumerate(outcomes) if o is not None]
        if not failed:
            return s, got
        who, first = failed[0]
        where = f" on process {who}" if jax.process_count() > 1 else ""
        damaged = all(o["read"] for _, o in failed)
        later = [t for t in older if t < s]
        if fall_back and damaged and later:
            if sharding.is_lead():
                print(
                    f"warning: {root}: step {s} is incomplete or corrupt{where} ({first['error']}); "
                    f"resuming from step {later[0]} instead",
                    file=sys.stderr,
                )
            continue
        if damaged:
            raise UserError(
                f"{root}: step {s} cannot be read{where} ({first['error']}); the step may be "
                f"damaged: to use another, name its directory ({_steps_text(root, below=s)})"
            )
        raise UserError(f"{root}: step {s} cannot be restored{where} ({first['error']})")
    raise AssertionError("unreachable")


def default_mesh() -> Any:
    """Where a loaded model lives unless the caller names a mesh: the default device with one
    process; with several, replicated over every device of every process (one global model)."""
    devices = jax.devices()[:1] if jax.process_count() == 1 else None
    return sharding.make_mesh(-1, 1, 1, devices=devices)


def load_model(
    path: str | Path,
    *,
    dtype: str | None = None,
    expect_head: str | None = None,
    mesh: Any = None,
) -> Loaded:
    """Load a model for inference (eval, sampling, export): exactly one step, parameters only.

    The parameters are restored straight onto `mesh` (default `default_mesh()`) with this
    project's sharding rules, whatever topology wrote them.
    """
    root, _ = resolve(path)
    info = read_model_info(root)
    try:
        cfg = ModelConfig(**info["model"])
    except (TypeError, ValueError) as e:
        raise UserError(f"{root}/model.json: bad model config ({e})") from None
    if dtype is not None:
        cfg = cfg.replace(dtype=dtype)
    cfg = cfg.for_platform(jax.default_backend())  # the layer scan as suits where it runs
    if expect_head is not None and cfg.head != expect_head:
        kind = {"lm": "generator", "value": "verifier"}
        raise UserError(
            f"{root}: is a {kind[cfg.head]} checkpoint (head={cfg.head}), expected a {kind[expect_head]}"
        )
    tok = root / "tokenizer"
    if not tok.is_dir():
        raise UserError(f"{root}: checkpoint has no tokenizer/ directory")
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    shardings = sharding.state_shardings(state, mesh if mesh is not None else default_mesh())
    items = {
        "params": ocp.args.StandardRestore(abstract_params(cfg, shardings)),
        "meta": ocp.args.JsonRestore(),
    }
    try:
        step, restored = restore(path, items)
    except UserError:  # every process at once; a step of another shape is named as such
        root, step = choose_step(path)
        stored = _stored_params(root / "checkpoints" / str(step))
        if stored is not None:
            _check_shapes(abstract_params(cfg), stored, f"{root} step {step}")
        raise
    nnx.replace_by_pure_dict(state, restored["params"])
    return Loaded(nnx.merge(graphdef, state), cfg, tok, step, root, dict(restored["meta"] or {}))


def _stored_params(step_dir: Path) -> Any:
    """The step's stored parameter shapes (orbax metadata, no array read); None if unreadable,
    which the restore itself then reports as a damaged step."""
    try:
        meta = ocp.StandardCheckpointHandler().metadata(epath.Path(str(step_dir / "params")))
    except Exception:  # noqa: BLE001 - damage is the restore's to name
        return None
    tree = getattr(meta, "tree", meta)
    return tree if isinstance(tree, dict) else None


def _check_shapes(expected: dict, actual: Any, where: str) -> None:
    """A checkpoint whose weights do not match its model.json is named as such (orbax, given the
    target shapes, would only say that a shape is incompatible)."""
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(actual)}
    for path, want in jax.tree_util.tree_leaves_with_path(expected):
        name = jax.tree_util.keystr(path)
        if name not in got:
            continue  # a parameter the step lacks (another head): the restore names it
        if tuple(got[name].shape) != tuple(want.shape):
            raise UserError(
                f"{where}: parameter {name} has shape {tuple(got[name].shape)}, model.json implies {tuple(want.shape)}"
            )


def save_model(
    out: str | Path,
    model: Phi,
    tokenizer_dir: str | Path,
    *,
    objective: str | None = None,
    step: int = 0,
    meta: dict | None = None,
) -> None:
    """Write a complete checkpoint (e.g. an import from HF) atomically: all of it or nothing."""
    out = as_path(out)
    cfg: ModelConfig = model.cfg
    objective = objective or ("generator" if cfg.head == "lm" else "verifier")
    params = nnx.to_pure_dict(nnx.state(model, nnx.Param))
    with atomic_path(out, is_dir=True) as tmp:
        write_model_info(tmp, cfg, objective, tokenizer_dir)
        mngr = manager(tmp, keep=None, async_save=False)
        mngr.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params),
                meta=ocp.args.JsonSave({"step": step, "model": cfg.to_dict(), **(meta or {})}),
            ),
        )
        mngr.wait_until_finished()
        mngr.close()


def transplant(target: dict, source: dict, *, source_head: str, target_head: str) -> dict:
    """Copy `source` params into `target` (pure dicts): the trunk always, a head where both have it.

    This is how a verifier starts from its generator: the trunk is copied and the scalar head
    keeps its fresh initialisation; a joint-objective verifier (`keep_lm_head`) also takes the
    generator's LM head. Shapes must match exactly (UserError otherwise).
    """
    heads = set(HEAD_PARAMS[source_head] + HEAD_PARAMS[target_head])
    out = dict(target)
    for key, value in target.items():
        if key in heads and key not in source:
            continue  # a head the source does not have: keep the fresh one
        if key not in source:
            raise UserError(f"checkpoint has no parameter '{key}'")
        src = source[key]
        if isinstance(value, dict):
            out[key] = transplant(value, src, source_head=target_head, target_head=target_head)
        elif tuple(src.shape) != tuple(value.shape):
            raise UserError(
                f"checkpoint parameter '{key}' has shape {tuple(src.shape)}, model expects {tuple(value.shape)}"
            )
        else:
            out[key] = src
    return out
