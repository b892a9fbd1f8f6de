"""One process of a multi-process CLI test: runs tinygsm_jax CLIs in turn, logging each file written.

    python tests/multihost_support.py WRITES_LOG MODULE ARG... [--then MODULE ARG...]

Every completed atomic write (`os.replace`, which `cli.atomic_path` ends with) appends its
destination to WRITES_LOG, so a test can check that each output file is written once, and by
one process. Stdout carries only what Python prints (native libraries' prints go to stderr).
The CLIs run in one interpreter (`initialize_distributed` joins the run once).

Two MODULEs are test commands, not CLIs: `digest --checkpoint C [--init-from-config K=V ...]`
prints `digest <what> <step> <sha256>` for the parameters `load_model` restores (and, with
--init-from-config, those `train.init_from` restores into a trainer sharded over every device);
`reshard --checkpoint C --out D` saves C's model again from parameters split over all devices
(fsdp), so that more than one device wrote D.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys

from helpers import python_stdout_only

_replace = os.replace


def _logged_replace(src, dst, *args, **kwargs):
    _replace(src, dst, *args, **kwargs)
    with open(sys.argv[1], "a", encoding="utf-8") as f:
        f.write(json.dumps(os.fspath(dst)) + "\n")


def params_sha256(params: dict) -> str:
    """One hash of every parameter's name, dtype, shape and bytes (gathered from all processes)."""
    import jax
    import numpy as np
    from jax.experimental import multihost_utils

    h = hashlib.sha256()
    for path, x in sorted(jax.tree_util.tree_leaves_with_path(params), key=lambda kv: str(kv[0])):
        full = np.asarray(multihost_utils.process_allgather(x, tiled=True))
        h.update(f"{jax.tree_util.keystr(path)}|{full.dtype}|{full.shape}|".encode())
        h.update(np.ascontiguousarray(full).tobytes())
    return h.hexdigest()


def _parser() -> argparse.ArgumentParser:
    from tinygsm_jax.sharding import add_distributed_args

    p = argparse.ArgumentParser()
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--out")
    p.add_argument("--init-from-config", nargs="*", default=None)
    add_distributed_args(p)
    return p


def digest(argv: list[str]) -> int:
    import tempfile

    from flax import nnx

    from tinygsm_jax import checkpoint, sharding

    args = _parser().parse_args(argv)
    sharding.initialize_from_args(args)
    loaded = checkpoint.load_model(args.checkpoint)
    params = nnx.to_pure_dict(nnx.state(loaded.model, nnx.Param))
    print(f"digest load_model {loaded.step} {params_sha256(params)}")
    if args.init_from_config is not None:
        from tinygsm_jax import train
        from tinygsm_jax.config import load_config
        from tinygsm_jax.train_step import make_trainer

        overrides = [f"--config.{kv}" for kv in args.init_from_config]
        config = load_config("tiny", [*overrides, f"--config.train.init_from={args.checkpoint}"])
        mesh = sharding.make_mesh(1, -1, 1)  # parameters split over every device
        trainer = make_trainer(config, mesh)
        init = train.check_init_from(config)
        with tempfile.TemporaryDirectory() as fresh:
            state, start, _ = train.restore_or_init(trainer, None, fresh, init)
        assert start == 0
        print(f"digest init_from {loaded.step} {params_sha256(state['params'])}")
    return 0


def reshard(argv: list[str]) -> int:
    import jax
    from flax import nnx

    from tinygsm_jax import checkpoint, sharding

    args = _parser().parse_args(argv)
    loaded = checkpoint.load_model(args.checkpoint)
    state = nnx.state(loaded.model, nnx.Param)
    split = jax.device_put(
        nnx.to_pure_dict(state), sharding.state_shardings(state, sharding.make_mesh(1, -1, 1))
    )
    nnx.replace_by_pure_dict(state, split)
    nnx.update(loaded.model, state)
    checkpoint.save_model(args.out, loaded.model, loaded.tokenizer_dir, step=loaded.step)
    return 0


TEST_COMMANDS = {"digest": digest, "reshard": reshard}


def main() -> int:
    python_stdout_only()
    os.replace = _logged_replace
    commands, current = [], []
    for a in sys.argv[2:]:
        if a == "--then":
            commands.append(current)
            current = []
        else:
            current.append(a)
    commands.append(current)
    from tinygsm_jax.cli import UserError

    for module, *argv in commands:
        try:
            if module in TEST_COMMANDS:
                rc = TEST_COMMANDS[module](argv)
            else:
                rc = importlib.import_module(f"tinygsm_jax.{module}").main(argv)
        except UserError as e:  # as `cli.run_main` reports it: one line, exit status 2
            print(f"error: {e}", file=sys.stderr)
            return 2
        if rc:
            return rc
    return 0


if __name__ == "__main__":
    sys.exit(main())
