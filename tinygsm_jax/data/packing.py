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


def empty_batch(rows: int, seq_len: int, pad_id: int, with_labels: bool) -> dict[str, np.ndarray]:
    batch = {
        "inputs": np.full((rows, seq_len), pad_id, np.int32),
        "targets": np.full((rows, seq_len), pad_id, np.int32),
        "loss_mask": np.zeros((rows, seq_len), np.float32),
        "segment_ids": np.zeros((rows, seq_len), np.int32),
        "positions": np.zeros((rows, seq_len), np.int32),
    }
    if with_labels:
        batch["labels"] = np.zeros((rows, seq_len), np.float32)
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
