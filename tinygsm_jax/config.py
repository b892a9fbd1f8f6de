"""Experiment configs: a Python file with `get_config()` plus `--config.a.b=value` overrides.

Equivalent to absl's `config_flags.DEFINE_config_file`, but usable from argparse-based CLIs:
`add_config_args(parser)` adds `--config`, and `load_config(path, overrides)` applies the
unparsed `--config.*` arguments with the type of the value they replace. Unknown keys and
ill-typed values are `UserError`s, reported before anything is compiled.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import sys
from pathlib import Path

import ml_collections

from tinygsm_jax.cli import UserError

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


def resolve_config_path(path: str) -> Path:
    """Accept `configs/tiny.py`, `tiny.py` or `tiny` (looked up in the shipped configs)."""
    p = Path(path)
    if p.is_file():
        return p
    for cand in (CONFIG_DIR / p.name, CONFIG_DIR / f"{p.name}.py"):
        if cand.is_file():
            return cand
    raise UserError(f"config file not found: {path}")


def load_config_file(path: str) -> ml_collections.ConfigDict:
    """Import a config file and return its `get_config()`."""
    p = resolve_config_path(path)
    root = str(CONFIG_DIR.parent)
    if root not in sys.path:  # config files import `configs.base`
        sys.path.insert(0, root)
    spec = importlib.util.spec_from_file_location(f"_tinygsm_config_{p.stem}", p)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise UserError(f"{p}: has no get_config()")
    return module.get_config()


def _parse_value(raw: str, current):
    """Parse `raw` into the type of `current` (bool/int/float/str/None/tuple)."""
    if isinstance(current, bool):
        low = raw.lower()
        if low in ("1", "true", "yes"):
            return True
        if low in ("0", "false", "no"):
            return False
        raise ValueError(f"expected a boolean, got {raw!r}")
    if isinstance(current, int):
        return int(raw)
    if isinstance(current, float):
        return float(raw)
    if isinstance(current, str):
        return raw
    if current is None:
        try:
            return ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
    if isinstance(current, (tuple, list)):
        val = ast.literal_eval(raw)
        return type(current)(val)
    raise ValueError(f"cannot override a value of type {type(current).__name__}")


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> None:
    """Apply `--config.a.b=value` (or `--config.a.b value`) overrides in place."""
    i = 0
    while i < len(overrides):
        arg = overrides[i]
        if not arg.startswith("--config."):
            raise UserError(f"unrecognized argument: {arg}")
        key, sep, raw = arg[len("--config.") :].partition("=")
        if not sep:
            if i + 1 >= len(overrides):
                raise UserError(f"{arg}: missing value")
            raw = overrides[i + 1]
            i += 1
        i += 1
        parts = key.split(".")
        node = config
        for part in parts[:-1]:
            if part not in node or not isinstance(node[part], ml_collections.ConfigDict):
                raise UserError(f"unknown config key: {key}")
            node = node[part]
        leaf = parts[-1]
        if leaf not in node:
            raise UserError(f"unknown config key: {key}")
        try:
            value = _parse_value(raw, node[leaf])
        except (ValueError, SyntaxError) as e:
            raise UserError(f"--config.{key}: {e}") from None
        with node.ignore_type():
            node[leaf] = value


def add_config_args(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument(
        "--config",
        required=required,
        help="config file, e.g. configs/tiny.py (overrides: --config.a.b=v)",
    )


def load_config(path: str, overrides: list[str] | None = None) -> ml_collections.ConfigDict:
    """Load a config file and apply overrides; the result is unlocked for derived fields."""
    config = load_config_file(path)
    apply_overrides(config, list(overrides or []))
    return config
