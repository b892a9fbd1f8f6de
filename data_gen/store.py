"""The output directory of a teacher run, crash-safe: kill -9 at any moment, rerun, resume.

Layout of DIR:
  problems.jsonl   {id, seed_id, question, code}          (append-only)
  rejects.jsonl    {seed_id, reason, text}                 (append-only)
  journal.jsonl    one line per completed seed: {seed_id, problems_end, rejects_end, usage}
  stage1.jsonl     two-step only: the rephrased questions of a seed, so they are paid once
  summary.json     totals (rewritten atomically)

A seed is committed in two steps: its rows are appended to problems/rejects and fsynced,
then its journal line (holding the byte sizes of both files after the append) is appended
and fsynced. On open, a torn last journal line is cut off and both data files are truncated
to the sizes in the last good journal line, which removes the rows of a seed that was being
written when the process died. So every problem appears once, and a seed in the journal is
never asked for again. One writer at a time is enforced with an advisory lock.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections import Counter
from pathlib import Path

from tinygsm_jax.cli import UserError, atomic_write_json

USAGE_KEYS = ("requests", "retries", "tokens_in", "tokens_out", "cost_usd")


def _read_log(path: Path) -> tuple[list[dict], int]:
    """Valid JSON lines of an append-only log and the byte length they span (torn tail cut)."""
    entries, good = [], 0
    if not path.exists():
        return entries, 0
    with path.open("rb") as f:
        for line in f:
            if not line.endswith(b"\n"):
                break
            try:
                entries.append(json.loads(line))
            except ValueError:
                break
            good += len(line)
    return entries, good


def _truncate(path: Path, size: int) -> None:
    if path.exists() and path.stat().st_size != size:
        with path.open("r+b") as f:
            f.truncate(size)
            os.fsync(f.fileno())


class Store:
    """Append-only, fsynced outputs of one teacher run; see the module docstring."""

    def __init__(self, out_dir: str | os.PathLike) -> None:
        self.dir = Path(out_dir)
        self.problems_path = self.dir / "problems.jsonl"
        self.rejects_path = self.dir / "rejects.jsonl"
        self.journal_path = self.dir / "journal.jsonl"
        self.stage1_path = self.dir / "stage1.jsonl"
        self.summary_path = self.dir / "summary.json"
        self.done: set[str] = set()
        self.stage1: dict[str, list[str]] = {}
        self.totals: Counter = Counter()
        self.reasons: Counter = Counter()
        self._fds: dict[str, int] = {}
        self._lock_fd: int | None = None

    def open(self) -> Store:
        """Lock DIR, recover from a crash and load what is done."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise UserError(f"{self.dir}: in use by another run (lock held)") from None
        entries, good = _read_log(self.journal_path)
        _truncate(self.journal_path, good)
        last = entries[-1] if entries else {"problems_end": 0, "rejects_end": 0}
        _truncate(self.problems_path, last["problems_end"])
        _truncate(self.rejects_path, last["rejects_end"])
        for e in entries:
            self.done.add(e["seed_id"])
            self._count(e)
        s1, good1 = _read_log(self.stage1_path)
        _truncate(self.stage1_path, good1)
        for e in s1:
            self._count(e)
            if e["seed_id"] not in self.done:
                self.stage1[e["seed_id"]] = e["questions"]
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND
        for name, path in (
            ("problems", self.problems_path),
            ("rejects", self.rejects_path),
            ("journal", self.journal_path),
            ("stage1", self.stage1_path),
        ):
            self._fds[name] = os.open(path, flags, 0o644)
        return self

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> Store:
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()

    def _count(self, entry: dict) -> None:
        for k in USAGE_KEYS:
            self.totals[k] += entry.get("usage", {}).get(k, 0)
        self.totals["problems"] += entry.get("problems", 0)
        self.reasons.update(entry.get("reasons", {}))

    def _append(self, name: str, lines: list[dict]) -> int:
        fd = self._fds[name]
        if lines:
            data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in lines).encode()
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        return os.fstat(fd).st_size

    def commit(
        self, seed_id: str, problems: list[tuple[str, str]], rejects: list[dict], usage: dict
    ) -> None:
        """Record a finished seed: its problems, its rejects, then its journal line (atomic)."""
        if seed_id in self.done:
            return
        rows = [
            {"id": f"{seed_id}-{k}", "seed_id": seed_id, "question": q, "code": c}
            for k, (q, c) in enumerate(problems)
        ]
        rej = [{"seed_id": seed_id, **r} for r in rejects]
        p_end = self._append("problems", rows)
        r_end = self._append("rejects", rej)
        entry = {
            "seed_id": seed_id,
            "problems_end": p_end,
            "rejects_end": r_end,
            "problems": len(rows),
            "reasons": dict(Counter(r["reason"] for r in rejects)),
            "usage": {k: usage.get(k, 0) for k in USAGE_KEYS},
        }
        self._append("journal", [entry])
        self.done.add(seed_id)
        self.stage1.pop(seed_id, None)
        self._count(entry)

    def commit_stage1(self, seed_id: str, questions: list[str], usage: dict) -> None:
        """Record the rephrased questions of a two-step seed so a restart does not pay again."""
        entry = {
            "seed_id": seed_id,
            "questions": questions,
            "usage": {k: usage.get(k, 0) for k in USAGE_KEYS},
        }
        self._append("stage1", [entry])
        self.stage1[seed_id] = questions
        self._count(entry)

    def check_config(self, config: dict, keys: tuple[str, ...]) -> None:
        """Refuse to resume DIR with settings that change what a seed produces."""
        path = self.dir / "config.json"
        if path.exists():
            old = json.loads(path.read_text())
            for k in keys:
                if k in old and old[k] != config.get(k):
                    raise UserError(
                        f"{self.dir}: was started with {k}={old[k]!r}, now {config.get(k)!r}; "
                        "use the same settings to resume or a new --out"
                    )
        atomic_write_json(path, config)
