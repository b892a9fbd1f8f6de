"""Greedy sequence packing into fixed-shape rows, with segment ids, positions and a loss mask.

A document is `prompt tokens + body tokens + EOS` (the body and EOS are its *target* tokens).
It occupies `len(doc) - 1` positions of a row: `inputs` are `doc[:-1]`, `targets` are `doc[1:]`
(the next token, never crossing into the next document), so every position of a document has a
real target. `loss_mask` is 1 exactly where the target is a target token (body or EOS), never a
prompt token, never padding. `segment_ids` number the documents of a row 1, 2, 3, ... (0 =
padding) and `positions` restart at 0 in each, which is all the model needs to keep attention
inside a document. A document longer than the row is truncated to its first `seq_len` positions
(nothing is dropped; a prompt that alone fills the row then contributes no loss).

Rows are filled greedily in stream order: a document that does not fit the rest of a row starts
the next row. Every batch starts on a fresh row, so the position of the first document not yet
placed fully describes the packer between batches: that is what makes resuming exact.

`pack_grouped_batch` packs *groups* (one question's candidates, for the verifier's ranking
loss) so that a group's documents share one *row set* (the rows of one micro-batch) whenever
they fit in one, and writes the group's id at every one of its tokens (`group`, 0 = padding).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np


class Doc(NamedTuple):
    tokens: np.ndarray  # int32: prompt + body + EOS
    prompt_len: int
    label: float  # the verifier label (0/1); 0 for problems
    pos: tuple  # the reader's position of this document, used as the resume state
    group: int = 0  # the question's id (> 0) when batches keep a question's candidates together


# The ranking loss reads at most this many documents per row (`max_docs_per_row`): a static
# bound on its candidate slots. Grouped batches never put more in a row; a verifier document
# (a prompt with the question's docstring, then a program) is far longer than 16 tokens.
MIN_DOC_POSITIONS = 16


def max_docs_per_row(seq_len: int) -> int:
    """Documents a grouped row may hold: the ranking loss's candidate slots per row."""
    return max(1, -(-seq_len // MIN_DOC_POSITIONS))


class Peekable:
    """An iterator of `Doc`s that can show its next one without consuming it."""

    def __init__(self, it: Iterator[Doc]):
        self._it = it
        self._next: Doc | None = None
        self._done = False

    def peek(self) -> Doc | None:
        if self._next is None and not self._done:
            self._next = next(self._it, None)
            self._done = self._next is None
        return self._next

    def pop(self) -> Doc | None:
        doc = self.peek()
        self._next = None
        return doc


def empty_batch(
    rows: int, seq_len: int, pad_id: int, with_labels: bool, with_groups: bool = False
) -> dict[str, np.ndarray]:
    batch = {
        "inputs": np.full((rows, seq_len), pad_id, np.int32),
        "targets": np.full((rows, seq_len), pad_id, np.int32),
        "loss_mask": np.zeros((rows, seq_len), np.float32),
        "segment_ids": np.zeros((rows, seq_len), np.int32),
        "positions": np.zeros((rows, seq_len), np.int32),
    }
    if with_labels:
        batch["labels"] = np.zeros((rows, seq_len), np.float32)
    if with_groups:
        batch["group"] = np.zeros((rows, seq_len), np.int32)
    return batch


def pack_batch(
    docs: Peekable, rows: int, seq_len: int, *, pad_id: int = 0, with_labels: bool = False
) -> tuple[dict[str, np.ndarray], int]:
    """Fill `rows` rows of `seq_len` from `docs`; returns (batch, number of documents placed)."""
    batch = empty_batch(rows, seq_len, pad_id, with_labels)
    inputs, targets, mask = batch["inputs"], batch["targets"], batch["loss_mask"]
    seg, pos = batch["segment_ids"], batch["positions"]
    labels = batch.get("labels")
    ramp = np.arange(seq_len, dtype=np.int32)
    placed = 0
    for r in range(rows):
        col, segment = 0, 0
        while col < seq_len:
            doc = docs.peek()
            if doc is None:
                return batch, placed
            n = min(len(doc.tokens) - 1, seq_len)
            if n <= 0:  # nothing to learn from a one-token document
                docs.pop()
                continue
            if n > seq_len - col:
                break
            docs.pop()
            t = doc.tokens
            end = col + n
            segment += 1
            inputs[r, col:end] = t[:n]
            targets[r, col:end] = t[1 : n + 1]
            mask[r, col + min(max(doc.prompt_len - 1, 0), n) : end] = 1.0
            seg[r, col:end] = segment
            pos[r, col:end] = ramp[:n]
            if labels is not None:
                labels[r, col:end] = doc.label
            col = end
            placed += 1
    return batch, placed


def _write(batch: dict[str, np.ndarray], r: int, col: int, segment: int, doc: Doc, n: int) -> None:
    """Place the first `n` positions of `doc` in row `r` from column `col` as segment `segment`."""
    t, end = doc.tokens, col + n
    batch["inputs"][r, col:end] = t[:n]
    batch["targets"][r, col:end] = t[1 : n + 1]
    batch["loss_mask"][r, col + min(max(doc.prompt_len - 1, 0), n) : end] = 1.0
    batch["segment_ids"][r, col:end] = segment
    batch["positions"][r, col:end] = np.arange(n, dtype=np.int32)
    if "labels" in batch:
        batch["labels"][r, col:end] = doc.label
    if "group" in batch:
        batch["group"][r, col:end] = doc.group


class GroupStream:
    """Groups of `Doc`s (lists, one question each); the head group can be consumed in part."""

    def __init__(self, it: Iterator[list[Doc]]):
        self._it = it
        self._head: list[Doc] | None = None
        self._done = False

    def peek(self) -> list[Doc] | None:
        """The head group's documents not yet placed (None at the end of the stream)."""
        while self._head is None and not self._done:
            nxt = next(self._it, None)
            if nxt is None:
                self._done = True
            elif nxt:
                self._head = list(nxt)
        return self._head

    def consume(self, k: int) -> None:
        """Drop the head group's first `k` documents (the whole group when none are left)."""
        head = self.peek()
        if head is not None:
            self._head = head[k:] or None


def pack_grouped_batch(
    groups: GroupStream,
    row_sets: list[list[int]],
    seq_len: int,
    *,
    pad_id: int = 0,
    with_labels: bool = True,
) -> tuple[dict[str, np.ndarray], int]:
    """Fill the rows of `row_sets` (one list of row indices per micro-batch, in fill order)
    with whole groups; returns (batch, number of documents placed).

    Row sets are filled one after the other, each row greedily as in `pack_batch` and with at
    most `max_docs_per_row(seq_len)` documents. A group that does not fit in what is left of
    a row set moves to the next one; only a group too large for an empty row set is split, its
    remaining documents starting the next row set (or the next batch). So two candidates of a
    question meet in one micro-batch unless the question alone overflows one.
    """
    n_rows = sum(len(rs) for rs in row_sets)
    batch = empty_batch(n_rows, seq_len, pad_id, with_labels, with_groups=True)
    cap = max_docs_per_row(seq_len)
    placed = 0
    for rs in row_sets:
        ri, col, count = 0, 0, 0  # the row set's current row, its next column, its documents
        while ri < len(rs):
            group = groups.peek()
            if group is None:
                return batch, placed
            # Where each document of the group would go, without writing yet.
            plan, r2, c2, k2 = [], ri, col, count
            for doc in group:
                n = min(len(doc.tokens) - 1, seq_len)
                if n <= 0:  # nothing to learn from a one-token document
                    plan.append(None)
                    continue
                if n > seq_len - c2 or k2 >= cap:
                    r2, c2, k2 = r2 + 1, 0, 0
                    if r2 >= len(rs):
                        break
                plan.append((rs[r2], c2, k2 + 1, n))
                c2, k2 = c2 + n, k2 + 1
            fits = len(plan) == len(group)
            if not fits and (ri, col) != (0, 0):
                break  # the whole group starts the next row set
            for doc, spot in zip(group, plan):
                if spot is not None:
                    _write(batch, spot[0], spot[1], spot[2], doc, spot[3])
                    placed += 1
            groups.consume(len(plan))
            ri, col, count = r2, c2, k2
            if not fits:
                break
    return batch, placed
