"""One self-describing checkpoint format, understood by every command (`--checkpoint DIR`).

Layout (a training workdir and an imported model look the same)::

    CKPT/model.json                  {"format", "model": ModelConfig fields, "objective"}
    CKPT/tokenizer/                  the Hugging Face tokenizer the model was trained with
    CKPT/checkpoints/<step>/params   orbax: the float32 parameters (pure dict of arrays)
    CKPT/checkpoints/<step>/meta     orbax JSON: step, model config, data position, RNG, ...
    CKPT/checkpoints/<step>/opt_state   (training workdirs only)

`--checkpoint` accepts CKPT (its latest complete step) or one step's directory. orbax
writes each step into a temporary directory and renames it when complete, so an
interrupted save is never listed; a step whose files are damaged is skipped, with a
warning, for the one before it.
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
    root: str | Path, cfg: ModelConfig, objective: str, tokenizer_dir: str | Path
) -> None:
    """Write model.json and copy the tokenizer into `root` (process 0 only in multi-host runs)."""
    root = as_path(root)
    root.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        root / "model.json", {"format": FORMAT, "model": cfg.to_dict(), "objective": objective}
    )
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


def restore(
    path: str | Path, items: dict[str, Any], *, mngr: ocp.CheckpointManager | None = None
) -> tuple[int, dict]:
    """Restore `items` (name -> orbax restore args) from the requested or latest good step.

    Returns (step, restored items). Damaged steps are skipped with a warning; none left is a
    UserError.
    """
    root, step = resolve(path)
    mngr = mngr or manager(root, keep=None, async_save=False)
    steps = [step] if step is not None else sorted(mngr.all_steps(), reverse=True)
    if not steps:
        raise UserError(f"{root}: holds no checkpoint step")
    for i, s in enumerate(steps):
        try:
            return s, mngr.restore(s, args=ocp.args.Composite(**items))
        except UserError:
            raise
        except Exception as e:  # a damaged step: fall back to the one before
            if step is not None or i == len(steps) - 1:
                raise UserError(
                    f"{root}: step {s} cannot be restored ({type(e).__name__}: {str(e).strip().splitlines()[0][:300]})"
                ) from None
            print(
                f"warning: {root} step {s} is incomplete or corrupt ({type(e).__name__}); using step {steps[i + 1]}",
                file=sys.stderr,
            )
    raise AssertionError("unreachable")


def load_model(
    path: str | Path,
    *,
    dtype: str | None = None,
    expect_head: str | None = None,
    shardings: Any = None,
) -> Loaded:
    """Load a model for inference (eval, sampling, export) from a workdir or a step directory."""
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
    step, restored = restore(
        path,
        {
            "params": ocp.args.StandardRestore(abstract_params(cfg, shardings)),
            "meta": ocp.args.JsonRestore(),
        },
    )
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Phi(cfg, rngs=nnx.Rngs(0))))
    _check_shapes(abstract_params(cfg), restored["params"], f"{root} step {step}")
    nnx.replace_by_pure_dict(state, restored["params"])
    return Loaded(nnx.merge(graphdef, state), cfg, tok, step, root, dict(restored["meta"] or {}))


def _check_shapes(expected: dict, actual: dict, where: str) -> None:
    """orbax restores an array with its stored shape whatever the target says: catch a
    checkpoint whose weights do not match its model.json here, not as a wrong model later."""
    got = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_leaves_with_path(actual)}
    for path, want in jax.tree_util.tree_leaves_with_path(expected):
        name = jax.tree_util.keystr(path)
        if name not in got:
            raise UserError(
                f"{where}: has no parameter {name} (the weights do not match model.json)"
            )
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
