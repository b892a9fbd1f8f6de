"""13-gram decontamination against evaluation sets (the TinyGSM paper's method).

A question is contaminated when it shares any word 13-gram with a question of an evaluation
set after both are lower-cased and stripped of punctuation and numbers. Removing numbers
matters: a teacher that copies a test question but changes its numbers still matches.
The index holds the n-grams of the (small) evaluation sets; candidates are streamed past it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

from tinygsm_jax.cli import UserError, read_jsonl

NGRAM = 13
_NON_WORD = re.compile(r"[^a-z]+")


def words(text: str) -> list[str]:
    """Lower-cased words with punctuation and numbers removed ("$1,200.50" vanishes)."""
    return _NON_WORD.sub(" ", text.lower().replace("'", "")).split()


def ngrams(text: str, n: int = NGRAM) -> Iterator[str]:
    w = words(text)
    for i in range(len(w) - n + 1):
        yield " ".join(w[i : i + n])


def _texts(path: Path) -> Iterator[str]:
    """Question texts of an evaluation file: JSONL (`question`, or `Body`+`Question`) or JSON list."""

    def text_of(row: dict, where: str) -> str:
        if isinstance(row.get("question"), str):
            return row["question"]
        if isinstance(row.get("Question"), str):
            return f"{row.get('Body', '')} {row['Question']}"
        for key in ("problem", "text"):
            if isinstance(row.get(key), str):
                return row[key]
        raise UserError(f"{where}: no 'question' (or 'Body'+'Question', 'problem', 'text') field")

    if path.suffix == ".json":
        try:
            rows = json.loads(path.read_text())
        except FileNotFoundError:
            raise UserError(f"{path}: no such file") from None
        except ValueError as e:
            raise UserError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(rows, list):
            raise UserError(f"{path}: expected a JSON list of problems")
        for i, row in enumerate(rows):
            if not isinstance(row, dict):
                raise UserError(f"{path}: item {i} is not an object")
            yield text_of(row, f"{path}: item {i}")
        return
    for lineno, row in read_jsonl(path):
        yield text_of(row, f"{path}:{lineno}")


class Decontaminator:
    """An index of evaluation n-grams; `match(question)` names a shared one, or None."""

    def __init__(self, n: int = NGRAM) -> None:
        self.n = n
        self.grams: set[str] = set()
        self.sources: list[str] = []

    def add_text(self, text: str) -> None:
        self.grams.update(ngrams(text, self.n))

    def add_file(self, path: str | Path) -> int:
        """Index every question of `path`; returns how many questions were read."""
        count = 0
        for text in _texts(Path(path)):
            self.add_text(text)
            count += 1
        self.sources.append(str(path))
        return count

    def match(self, question: str) -> str | None:
        if not self.grams:
            return None
        for g in ngrams(question, self.n):
            if g in self.grams:
                return g
        return None
