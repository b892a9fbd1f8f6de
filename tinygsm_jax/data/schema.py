"""Record schemas: problems (the generator's data) and verifier candidates (the verifier's).

A *problem* is a question and its TinyGSM program (`code`: the whole function, header and
docstring included, as in the published TinyGSM parquet), with an optional `answer`, the
`source` it came from and an `id`. A *candidate* is one program a generator checkpoint sampled
for a question, labelled 1 if its answer was right: the verifier learns from these.

The token layout both share (`layout`): the prompt is `make_prompt(question)` (the header and
docstring, exactly what the sampler is prompted with at evaluation), the target is the
program's body up to where the function ends, followed by EOS.

A verifier may also read the program's execution result (`layout(..., execution_result=True)`):
the comment line `solution_format.execution_line` writes from the row's answer, status and
error (`execution_of_row`), after the body. The builder writes it into the ids only when asked
(`data build --execution-result`) and records that in the data set's metadata; train refuses a
verifier config whose `data.execution_result` says otherwise, and eval's `Scorer` builds the same
line from each sample's own execution, as the verifier checkpoint's model.json says.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from tinygsm_jax import solution_format
from tinygsm_jax.cli import UserError

PROBLEMS = "problems"
VERIFIER = "verifier"
KINDS = (PROBLEMS, VERIFIER)


@dataclasses.dataclass(frozen=True)
class Problem:
    """One training problem for the generator."""

    question: str
    code: str
    answer: str = ""
    source: str = ""
    id: str = ""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One sampled solution, labelled by whether its answer was correct (the verifier's data)."""

    question: str
    code: str  # the full candidate program (prompt + sampled body)
    label: int  # 1 = correct final answer, 0 = wrong (or failed to run)
    checkpoint: str = ""  # the generator checkpoint that sampled it (e.g. "step_1000")
    temperature: float = 0.0
    question_id: str = ""
    sample: int = 0  # index of this sample among the question's candidates
    # Its execution result as the verifier reads it (`execution_of_row`); "" when the row does
    # not say (rows written before verifier_data kept the sandbox's error).
    execution: str = ""


Record = Problem | Candidate


def kind_of_row(row: dict) -> str:
    """Verifier candidate rows carry a `label`; problem rows do not."""
    return VERIFIER if "label" in row else PROBLEMS


def _text(row: dict, key: str, where: str, *, required: bool) -> str:
    value = row.get(key)
    if value is None:
        if required:
            raise UserError(f"{where}: missing field '{key}'")
        return ""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise UserError(f"{where}: field '{key}' must be a string, got {type(value).__name__}")
    return str(value)


def execution_of_row(row: dict, where: str = "row") -> str:
    """The execution line of a row with the sandbox's answer, status and error (verifier_data's
    and eval's rows); "" when the row lacks them: no status, or an error with no error text."""
    status = row.get("status")
    if status is None or (status == "error" and "error" not in row):
        return ""
    error = row.get("error")
    if not isinstance(status, str) or not (error is None or isinstance(error, str)):
        raise UserError(f"{where}: fields 'status' and 'error' must be strings")
    return solution_format.execution_line(row.get("answer"), status, error)


def _label(row: dict, where: str) -> int:
    value = row.get("label")
    if isinstance(value, bool) or (isinstance(value, (int, float)) and value in (0, 1)):
        return int(value)
    raise UserError(f"{where}: field 'label' must be 0 or 1, got {value!r}")


def record_from_row(row: dict, where: str, *, kind: str, default_source: str = "") -> Record:
    """Validate one raw row (JSONL object or parquet row) into a record; `UserError` names `where`."""
    if kind_of_row(row) != kind:
        other = (
            "a verifier candidate (has 'label')" if kind == PROBLEMS else "a problem (no 'label')"
        )
        raise UserError(
            f"{where}: row is {other}, but the data set is of {kind}; do not mix the two"
        )
    code = _text(row, "code", where, required=True)
    if not code.strip():
        raise UserError(f"{where}: field 'code' is empty")
    question = _text(row, "question", where, required=False)
    if not question.strip():
        # The docstring of a TinyGSM program is its question.
        question = solution_format.question_of(code) or ""
        if not question:
            raise UserError(
                f"{where}: missing field 'question' (and the code has no docstring to take it from)"
            )
    if kind == PROBLEMS:
        return Problem(
            question=question,
            code=code,
            answer=_text(row, "answer", where, required=False),
            source=_text(row, "source", where, required=False) or default_source,
            id=_text(row, "id", where, required=False),
        )
    temperature = row.get("temperature", 0.0)
    if temperature is None:
        temperature = 0.0
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not math.isfinite(temperature)
    ):
        raise UserError(f"{where}: field 'temperature' must be a number, got {temperature!r}")
    sample = row.get("sample", 0)
    if sample is None:
        sample = 0
    if isinstance(sample, bool) or not isinstance(sample, int):
        raise UserError(f"{where}: field 'sample' must be an integer, got {sample!r}")
    return Candidate(
        question=question,
        code=code,
        label=_label(row, where),
        checkpoint=_text(row, "checkpoint", where, required=False),
        temperature=float(temperature),
        question_id=_text(row, "question_id", where, required=False),
        sample=sample,
        execution=execution_of_row(row, where),
    )


def layout(record: Record, *, execution_result: bool = False) -> tuple[str, str] | None:
    """(prompt, body) text the model is trained on, or None if `code` is not a TinyGSM program.

    The prompt is re-made from the question with `make_prompt`, so training prompts are byte for
    byte the prompts the sampler sees; the body is cut where the function ends (what the
    sampler's stop rule cuts) and ends with one newline. With `execution_result` (a candidate
    whose `execution` is known) the execution line and a newline follow the body.
    """
    parts = solution_format.split_program(record.code)
    if parts is None:
        return None
    body = parts[1]
    end = solution_format.body_end(body)
    if end is not None:
        body = body[:end]
    body = body.rstrip()
    if not body:
        return None
    body += "\n"
    if execution_result:
        execution = getattr(record, "execution", "")
        if not execution:
            raise ValueError("the record has no execution result to lay out")
        body += execution + "\n"
    return solution_format.make_prompt(record.question), body


def example_of(
    record: Record, *, prompt_ids=None, target_ids=None, execution_result: bool = False
) -> dict[str, Any]:
    """The TFDS example (a dict matching `features(kind, ...)`) for a record."""
    ex = dataclasses.asdict(record)
    if not execution_result:
        ex.pop("execution", None)  # a data set without execution lines keeps today's features
    if prompt_ids is not None:
        ex["prompt_ids"] = prompt_ids
        ex["target_ids"] = target_ids
    return ex


def features(kind: str, *, with_ids: bool, execution_result: bool = False):
    """The TFDS `FeaturesDict` of a data set of `kind` (text always; token ids if `with_ids`;
    a candidate's execution line as text if `execution_result`)."""
    import numpy as np
    import tensorflow_datasets as tfds

    text = tfds.features.Text
    spec: dict[str, Any] = {"question": text(), "code": text()}
    if kind == PROBLEMS:
        spec.update(answer=text(), source=text(), id=text())
    else:
        spec.update(
            label=tfds.features.Scalar(dtype=np.int32),
            checkpoint=text(),
            temperature=tfds.features.Scalar(dtype=np.float32),
            question_id=text(),
            sample=tfds.features.Scalar(dtype=np.int32),
        )
        if execution_result:
            spec.update(execution=text())
    if with_ids:
        # target_ids = the body's tokens followed by EOS.
        spec["prompt_ids"] = tfds.features.Tensor(shape=(None,), dtype=np.int32)
        spec["target_ids"] = tfds.features.Tensor(shape=(None,), dtype=np.int32)
    return tfds.features.FeaturesDict(spec)
