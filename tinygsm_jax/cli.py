"""Shared command-line conventions: user errors are one clear line and a non-zero exit.

Every `python -m` entry point wraps its `main` with `run_main`, raises `UserError` for bad
input (a file, a field, a flag), and writes its outputs with `atomic_write_*` so that an
interrupted or failed command never leaves a half-written file behind.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from etils import epath

# etils.epath is imported where a gs:// path is met, not here: every command imports this
# module and most never touch an object store (the import costs ~45 ms of start-up).
REMOTE_SCHEMES = ("gs://", "s3://")


class UserError(Exception):
    """Bad input from the user: printed as one line, exit status 2, no traceback."""


CPU_DEVICE_FLAG = "--xla_force_host_platform_device_count"
MAX_CPU_DEVICES = 8


def cpu_devices_for(cores: int) -> int:
    """The largest power of two at most `cores` and MAX_CPU_DEVICES: batches (powers of two
    in every config) then split evenly over the devices."""
    n = 1
    while n * 2 <= min(cores, MAX_CPU_DEVICES):
        n *= 2
    return n


def split_cpu_into_devices() -> None:
    """Give JAX one CPU device per core, unless XLA_FLAGS already sets the count.

    XLA's CPU runtime runs each matmul on a single thread: with one device, both cores of a
    2-core machine were busy only 30% of a train step (profile in docs/benchmarking.md).
    With a device per core the batch is data-parallel over the cores and both stay busy.
    Must run before JAX creates its CPU client; it changes nothing on TPU or GPU devices.
    """
    flags = os.environ.get("XLA_FLAGS", "")
    if CPU_DEVICE_FLAG in flags:
        return
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    n = cpu_devices_for(cores or 1)
    os.environ["XLA_FLAGS"] = f"{flags} {CPU_DEVICE_FLAG}={n}".strip()


def run_main(main: Callable[[list[str] | None], Any], argv: list[str] | None = None) -> None:
    """Run a CLI `main`, turning `UserError` (and Ctrl-C) into one line and an exit code."""
    split_cpu_into_devices()
    try:
        rc = main(argv)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(int(rc or 0))


def is_remote(path: str | os.PathLike) -> bool:
    """True for an object-store URL (gs://, s3://) rather than a local path."""
    return str(path).startswith(REMOTE_SCHEMES)


def as_path(path: str | os.PathLike) -> Path | epath.Path:
    """A local `Path`, or an `epath.Path` for gs:// and s3:// URLs.

    `pathlib.Path("gs://b/run")` silently becomes `gs:/b/run`; epath keeps the URL and reads and
    writes it through tf.io.gfile, the same way orbax does.
    """
    if not is_remote(path):
        return Path(path)
    from etils import epath

    return epath.Path(str(path))


def local_copy(path: str | os.PathLike) -> Path:
    """`path` itself when local; a gs:// directory is first copied to a local temporary one.

    For libraries that only read local files (tokenizers, transformers). The copy is made once
    per process and removed at exit.
    """
    if not is_remote(path):
        return Path(path)
    key = str(path).rstrip("/")
    if key not in _LOCAL_COPIES:
        from etils import epath

        src = epath.Path(key)
        if not src.is_dir():
            raise UserError(f"{path}: no such directory")
        tmp = Path(tempfile.mkdtemp(prefix="tinygsm_download."))
        atexit.register(shutil.rmtree, tmp, ignore_errors=True)
        copy_tree(src, tmp / src.name)
        _LOCAL_COPIES[key] = tmp / src.name
    return _LOCAL_COPIES[key]


_LOCAL_COPIES: dict[str, Path] = {}


def copy_tree(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy a file or a directory tree, each side local or gs:// (through epath)."""
    from etils import epath

    src, dst = epath.Path(str(src)), epath.Path(str(dst))
    if not src.is_dir():
        dst.parent.mkdir(parents=True, exist_ok=True)
        src.copy(dst, overwrite=True)
        return
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():  # not rglob: epath refuses `**` on object stores
        copy_tree(f, dst / f.name)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, *, is_dir: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of `path`; rename it onto `path` only if the block succeeds.

    For a gs:// or s3:// `path` the temporary is local and is uploaded when the block succeeds
    (an object appears only once completely written, so readers never see half a file).
    """
    if is_remote(path):
        with tempfile.TemporaryDirectory(prefix="tinygsm_upload.") as d:
            tmp = Path(d) / "item"
            if is_dir:
                tmp.mkdir()
            yield tmp
            remote = as_path(path)
            if is_dir and remote.exists():
                remote.rmtree()  # replaced, as a local directory is
            copy_tree(tmp, remote)
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if is_dir:
        tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    else:
        fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp = Path(name)
    try:
        yield tmp
        if is_dir and path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        if tmp.is_dir():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` to `path` atomically (temp file + rename)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def read_jsonl(
    path: str | os.PathLike, required: tuple[str, ...] = ()
) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, row) from a JSONL file, raising `UserError` naming the bad line.

    Blank lines are skipped; every row must be a JSON object holding the `required` keys.
    """
    path = as_path(path)  # gs:// too
    if not path.is_file():
        raise UserError(f"{path}: no such file")
    with path.open(encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise UserError(f"{path}:{lineno}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict):
                raise UserError(f"{path}:{lineno}: expected a JSON object")
            for key in required:
                if key not in row:
                    raise UserError(f"{path}:{lineno}: missing field '{key}'")
            yield lineno, row


def _console(module: str) -> Callable[[], None]:
    """A console-script entry point running `module.main` the way `python -m module` does."""

    def entry() -> None:
        import importlib

        run_main(importlib.import_module(module).main)

    entry.__doc__ = f"Entry point for `python -m {module}`."
    return entry


train = _console("tinygsm_jax.train")
evaluate = _console("tinygsm_jax.eval")
sample = _console("tinygsm_jax.sample")
export = _console("tinygsm_jax.export")
import_hf = _console("tinygsm_jax.import_hf")
data = _console("tinygsm_jax.data.__main__")
tokenizer = _console("tinygsm_jax.tokenizer")
execute = _console("tinygsm_jax.execute")
verifier_data = _console("tinygsm_jax.verifier_data")
aot = _console("tinygsm_jax.aot")
demo = _console("tinygsm_jax.demo")
data_gen = _console("data_gen.__main__")
