"""Evaluation sets, named `KIND:PATH` everywhere a data set is given.

    gsm8k:PATH   JSONL with `question` and `answer`; the gold number follows `#### ` (GSM8K's own files)
    svamp:PATH   a JSON list of objects with `Body`, `Question` and `Answer` (SVAMP.json)
    jsonl:PATH   JSONL with `question` and `answer` (a number, a number as text, or `... #### N`)

Every item keeps its 0-based position in the file (`index`), so reports can point back at it.
"""

from __future__ import annotations

import atexit
import dataclasses
import json
import shutil
import tempfile
from pathlib import Path

from tinygsm_jax import answers
from tinygsm_jax.cli import UserError, is_remote, read_jsonl

KINDS = ("gsm8k", "svamp", "jsonl")


@dataclasses.dataclass(frozen=True)
class EvalItem:
    """One evaluation question with its gold answer as a number."""

    question: str
    answer: int | float  # parsed by tinygsm_jax.answers (integral values are ints)
    index: int  # 0-based position in the file


def parse_gold(value, where: str) -> int | float:
    """The gold answer as a number (the shared `answers` rules); `UserError` naming `where`.

    GSM8K solutions give it after `#### `; other sets give a number or a number as text.
    """
    if isinstance(value, str) and "####" in value:
        try:
            return answers.parse_gsm8k_gold(value)
        except ValueError as e:
            raise UserError(f"{where}: {e}") from None
    number = answers.parse_number(value)
    if number is None:
        raise UserError(f"{where}: answer is not a number: {str(value)[:80]!r}")
    return number


def _gsm8k(path: Path) -> list[EvalItem]:
    items = []
    for i, (lineno, row) in enumerate(read_jsonl(path, required=("question", "answer"))):
        where = f"{path}:{lineno}"
        answer = row["answer"]
        if not isinstance(answer, str) or "####" not in answer:
            raise UserError(f"{where}: GSM8K answer must end with '#### <number>'")
        items.append(EvalItem(_question(row["question"], where), parse_gold(answer, where), i))
    return items


def _jsonl(path: Path) -> list[EvalItem]:
    items = []
    for i, (lineno, row) in enumerate(read_jsonl(path, required=("question", "answer"))):
        where = f"{path}:{lineno}"
        items.append(
            EvalItem(_question(row["question"], where), parse_gold(row["answer"], where), i)
        )
    return items


def _svamp(path: Path) -> list[EvalItem]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path}:{e.lineno}: not valid JSON ({e.msg})") from None
    if not isinstance(data, list):
        raise UserError(f"{path}: SVAMP file must be a JSON list of problems")
    items = []
    for i, row in enumerate(data):
        where = f"{path}: item {i}"
        if not isinstance(row, dict):
            raise UserError(f"{where}: expected an object")
        for key in ("Body", "Question", "Answer"):
            if key not in row:
                raise UserError(f"{where}: missing field '{key}'")
        body = _question(row["Body"], where, field="Body")
        if body[-1] not in ".?!":
            body += "."
        question = f"{body} {_question(row['Question'], where, field='Question')}"
        items.append(EvalItem(question, parse_gold(row["Answer"], where), i))
    return items


def _question(value, where: str, field: str = "question") -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"{where}: field '{field}' must be a non-empty string")
    return value.strip()


def _local_file(path: str) -> Path:
    """A gs:// file copied to a temporary local file (removed at exit)."""
    from etils import epath

    src = epath.Path(path)
    if not src.is_file():
        raise UserError(f"{path}: no such file")
    tmp = Path(tempfile.mkdtemp(prefix="tinygsm_download.")) / src.name
    atexit.register(shutil.rmtree, tmp.parent, ignore_errors=True)
    tmp.write_bytes(src.read_bytes())
    return tmp


def load_eval_set(spec: str) -> list[EvalItem]:
    """Load `gsm8k:PATH`, `svamp:PATH` or `jsonl:PATH`; `UserError` for anything wrong."""
    kind, sep, path = spec.partition(":")
    if not sep or not path:
        raise UserError(
            f"eval set {spec!r}: expected KIND:PATH with KIND one of {', '.join(KINDS)}"
        )
    if kind not in KINDS:
        raise UserError(f"eval set {spec!r}: unknown kind {kind!r} (one of {', '.join(KINDS)})")
    p = Path(path)
    if is_remote(path):  # gs://: read through a local copy (every host of a pod sees it)
        p = _local_file(path)
    if not p.is_file():
        raise UserError(f"{p}: no such file")
    items = {"gsm8k": _gsm8k, "svamp": _svamp, "jsonl": _jsonl}[kind](p)
    if not items:
        raise UserError(f"{p}: empty file (no questions)")
    return items
