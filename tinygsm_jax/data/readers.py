"""Read raw rows from JSONL files and parquet files (the published TinyGSM schema), streaming.

Every row comes with a location string (`file:line` for JSONL, `file: row N` for parquet) so
that a bad row is reported as one line naming where it is. Nothing here holds a whole file in
memory: parquet is read in record batches, JSONL line by line, so 12M rows stream through.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from tinygsm_jax.cli import UserError, read_jsonl

JSONL_SUFFIXES = (".jsonl",)
PARQUET_SUFFIXES = (".parquet", ".pq")
# TinyGSM's published parquet files hold exactly these two columns.
PARQUET_REQUIRED = ("question", "code")


def source_format(path: Path) -> str:
    """'jsonl' or 'parquet', from the file name."""
    name = path.name.lower()
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    raise UserError(f"{path}: unknown source format (expected .jsonl or .parquet)")


def expand_sources(sources: list[str | os.PathLike]) -> list[Path]:
    """Files named by `sources`; a directory stands for its *.jsonl and *.parquet files (sorted)."""
    out: list[Path] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files = sorted(
                f
                for f in p.iterdir()
                if f.is_file() and f.name.lower().endswith(JSONL_SUFFIXES + PARQUET_SUFFIXES)
            )
            if not files:
                raise UserError(f"{p}: directory holds no .jsonl or .parquet files")
            out.extend(files)
        elif p.is_file():
            source_format(p)
            out.append(p)
        else:
            raise UserError(f"{p}: no such file")
    resolved = [f.resolve() for f in out]
    if len(set(resolved)) != len(resolved):
        dup = next(f for f in out if resolved.count(f.resolve()) > 1)
        raise UserError(f"{dup}: given more than once")
    return out


def iter_jsonl(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, row) for every row of a JSONL file; an empty file is an error."""
    n = 0
    for lineno, row in read_jsonl(path):
        n += 1
        yield f"{path}:{lineno}", row
    if n == 0:
        raise UserError(f"{path}: empty file (no rows)")


def parquet_columns(path: Path) -> list[str]:
    import pyarrow.parquet as pq

    try:
        return list(pq.read_schema(path).names)
    except Exception as e:  # pyarrow raises ArrowInvalid/OSError for a file that is not parquet
        raise UserError(
            f"{path}: not a readable parquet file ({str(e).splitlines()[0][:200]})"
        ) from None


def iter_parquet(path: Path, batch_size: int = 4096) -> Iterator[tuple[str, dict]]:
    """(location, row) for every row of a parquet file, read in record batches.

    The file must have the TinyGSM columns `question` and `code`; other columns (`answer`,
    `label`, ...) are passed through.
    """
    import pyarrow.parquet as pq

    cols = parquet_columns(path)
    missing = [c for c in PARQUET_REQUIRED if c not in cols]
    if missing:
        raise UserError(
            f"{path}: missing column {', '.join(repr(c) for c in missing)} (has: {', '.join(cols) or 'none'})"
        )
    f = pq.ParquetFile(path)
    if f.metadata.num_rows == 0:
        raise UserError(f"{path}: empty file (no rows)")
    i = 0
    for batch in f.iter_batches(batch_size=batch_size):
        for row in batch.to_pylist():
            yield f"{path}: row {i}", row
            i += 1


def iter_rows(path: Path) -> Iterator[tuple[str, dict]]:
    """(location, row) for every row of a JSONL or parquet source."""
    if source_format(path) == "parquet":
        return iter_parquet(path)
    return iter_jsonl(path)
