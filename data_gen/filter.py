"""`python -m data_gen filter`: keep the problems a model should learn from, drop the rest.

Every row's program is executed in the sandbox (`tinygsm_jax.execute.Sandbox`), and a row is
kept when it returns a number, which becomes its `answer` (answers are not checked against
anything, as in the paper). Dropped, with a `reason`, in this order of checks:

  too_short       fewer than --min-words words in the question
  no_numbers      no digit in the question
  contaminated    shares a word 13-gram with a --decontaminate set (punctuation and numbers removed)
  duplicate       the same question (case and whitespace normalised) was already kept
  exec_<status>   the program did not return a number (error, timeout, memory, ...)
  near_duplicate  MinHash-LSH Jaccard >= --near-dup with a kept question (off by default, as in the paper)

Streams: rows are read, executed and written one window at a time; what is held for the whole
input is one 64-bit hash per kept question (and the LSH index if --near-dup is on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import sys
import time
from collections import Counter, deque
from collections.abc import Iterator
from pathlib import Path

from tqdm import tqdm

from data_gen.decontaminate import NGRAM, Decontaminator
from tinygsm_jax.cli import UserError, atomic_path, atomic_write_json, read_jsonl, run_main
from tinygsm_jax.solution_format import question_of

_DIGIT = re.compile(r"\d")


def norm_key(question: str) -> int:
    """A 64-bit hash of the question, lower-cased with whitespace collapsed."""
    text = " ".join(question.lower().split())
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class NearDup:
    """MinHash LSH over word trigrams (datasketch); `seen(key, text)` checks, then inserts."""

    def __init__(self, threshold: float, num_perm: int = 128) -> None:
        from datasketch import MinHash, MinHashLSH

        self._minhash = MinHash
        self.num_perm = num_perm
        self.lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)

    def signature(self, text: str):
        w = text.lower().split()
        shingles = {" ".join(w[i : i + 3]) for i in range(max(1, len(w) - 2))}
        m = self._minhash(num_perm=self.num_perm)
        m.update_batch([s.encode() for s in shingles])
        return m

    def seen(self, key: str, text: str) -> bool:
        m = self.signature(text)
        if self.lsh.query(m):
            return True
        self.lsh.insert(key, m)
        return False


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m data_gen filter", description=__doc__.splitlines()[0]
    )
    p.add_argument("--input", required=True, help="JSONL rows with `code` (and `question`)")
    p.add_argument(
        "--out", required=True, help="directory for kept.jsonl, dropped.jsonl, report.json"
    )
    p.add_argument(
        "--decontaminate", nargs="*", default=[], help="evaluation sets (JSONL/JSON) to keep out"
    )
    p.add_argument("--ngram", type=int, default=NGRAM, help="n of the decontamination n-grams")
    p.add_argument("--min-words", type=int, default=10, help="shorter questions are dropped")
    p.add_argument(
        "--near-dup", type=float, default=None, help="MinHash Jaccard threshold (off by default)"
    )
    p.add_argument("--num-perm", type=int, default=128, help="MinHash permutations")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per program")
    p.add_argument(
        "--workers", type=int, default=None, help="sandbox processes (default: all cores)"
    )
    p.add_argument(
        "--allow-degraded", action="store_true", help="run where a sandbox layer is missing"
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.near_dup is not None and not 0.0 < args.near_dup <= 1.0:
        raise UserError("--near-dup must be in (0, 1]")
    if args.ngram < 1:
        raise UserError("--ngram must be at least 1")
    if not Path(args.input).is_file():
        raise UserError(f"{args.input}: no such file")
    decon = Decontaminator(args.ngram)
    for path in args.decontaminate:
        decon.add_file(path)
    near = NearDup(args.near_dup, args.num_perm) if args.near_dup is not None else None

    from tinygsm_jax.execute import Sandbox, SandboxUnavailable

    counts: Counter = Counter()
    kept_keys: set[int] = set()
    start = time.monotonic()
    n_in = n_kept = 0
    try:
        sandbox = Sandbox(
            workers=args.workers, timeout=args.timeout, allow_degraded=args.allow_degraded
        )
    except SandboxUnavailable as e:
        raise UserError(
            f"sandbox unavailable: {e} (--allow-degraded runs without that layer)"
        ) from None
    with (
        sandbox,
        atomic_path(args.out, is_dir=True) as tmp,
        (tmp / "kept.jsonl").open("w") as kept,
        (tmp / "dropped.jsonl").open("w") as dropped,
        tqdm(unit="row", desc="filter", dynamic_ncols=True, file=sys.stderr) as bar,
    ):

        def drop(row: dict, reason: str, **extra) -> None:
            counts[reason] += 1
            dropped.write(json.dumps({**row, "reason": reason, **extra}, ensure_ascii=False) + "\n")
            bar.update(1)

        pending: deque = deque()

        def programs() -> Iterator[str]:
            nonlocal n_in
            for lineno, row in read_jsonl(args.input, required=("code",)):
                n_in += 1
                code = row["code"]
                if not isinstance(code, str):
                    raise UserError(f"{args.input}:{lineno}: field 'code' must be a string")
                q = row.get("question")
                if not isinstance(q, str) or not q.strip():
                    q = question_of(code) or ""
                if len(q.split()) < args.min_words:
                    drop(row, "too_short")
                elif not _DIGIT.search(q):
                    drop(row, "no_numbers")
                elif (gram := decon.match(q)) is not None:
                    drop(row, "contaminated", ngram=gram)
                elif norm_key(q) in kept_keys:
                    drop(row, "duplicate")
                else:
                    pending.append((row, q))
                    yield code

        for res in sandbox.imap(programs()):
            row, q = pending.popleft()
            key = norm_key(q)
            if not res.ok:
                drop(row, f"exec_{res.status}", error=(res.error or "")[:500])
            elif key in kept_keys:  # a twin kept while this one was in flight
                drop(row, "duplicate")
            elif near is not None and near.seen(str(n_kept), q):
                drop(row, "near_duplicate")
            else:
                kept_keys.add(key)
                n_kept += 1
                kept.write(json.dumps({**row, "answer": res.answer}, ensure_ascii=False) + "\n")
                bar.update(1)
        elapsed = time.monotonic() - start
        report = {
            "input": args.input,
            "rows": n_in,
            "kept": n_kept,
            "dropped": sum(counts.values()),
            "reasons": dict(sorted(counts.items())),
            "decontaminate": decon.sources,
            "ngram": args.ngram,
            "ngrams_indexed": len(decon.grams),
            "min_words": args.min_words,
            "near_dup": args.near_dup,
            "elapsed_s": round(elapsed, 3),
            "rows_per_s": round(n_in / elapsed, 1) if elapsed > 0 else None,
        }
        atomic_write_json(tmp / "report.json", report)
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) or "none"
    print(f"filter: kept {n_kept}/{n_in} rows (dropped: {reasons}) -> {args.out}")
    return 0


if __name__ == "__main__":
    run_main(main)
