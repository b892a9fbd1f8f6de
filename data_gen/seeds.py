"""Seed problems for the teacher: JSONL rows with `question` and an optional `id`.

Seeds are read twice, never held in memory: a first pass checks every row (so a bad line
fails before any money is spent) and counts them; a second pass streams them to the workers.
"""

from __future__ import annotations

from collections.abc import Iterator

from tinygsm_jax.cli import UserError, read_jsonl


def iter_seeds(path: str, limit: int | None = None) -> Iterator[tuple[str, str]]:
    """Yield (seed_id, question); the id defaults to the 0-based line index in the file."""
    for _, sid, q in _rows(path, limit):
        yield sid, q


def _rows(path: str, limit: int | None) -> Iterator[tuple[int, str, str]]:
    n = 0
    for lineno, row in read_jsonl(path, required=("question",)):
        if limit is not None and n >= limit:
            return
        q = row["question"]
        if not isinstance(q, str) or not q.strip():
            raise UserError(f"{path}:{lineno}: field 'question' must be a non-empty string")
        sid = row.get("id", lineno - 1)
        if not isinstance(sid, (str, int)) or isinstance(sid, bool) or str(sid) == "":
            raise UserError(f"{path}:{lineno}: field 'id' must be a string or an integer")
        n += 1
        yield lineno, str(sid), q


def check_seeds(path: str, limit: int | None = None) -> set[str]:
    """Validate the seed file before anything is written; return the seed ids (unique)."""
    seen: set[str] = set()
    for lineno, sid, _ in _rows(path, limit):
        if sid in seen:
            raise UserError(f"{path}:{lineno}: seed id {sid!r} appears twice; ids must be unique")
        seen.add(sid)
    if not seen:
        raise UserError(f"{path}: no seeds")
    return seen
