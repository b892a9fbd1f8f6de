"""The teacher prompts: the TinyGSM one-step prompt and its two-step variant, in our own words.

One-step (the paper's main recipe): show the teacher one GSM8K question and ask for N new,
similar problems, each followed by a complete Python program that solves it step by step.
Each question ends with `<|endofquestion|>` and each program with `<|endofprogram|>`, so the
answer can be cut into problems without guessing, and a truncated answer loses only its last one.

Two-step: first ask for N harder rephrasings (questions only), then ask the teacher to solve
them, copying each question before its program with the same markers, so both steps share
one parser.
"""

from __future__ import annotations

END_Q = "<|endofquestion|>"
END_P = "<|endofprogram|>"
STYLES = ("one-step", "two-step")

SYSTEM = (
    "You are an experienced grade-school math teacher who also writes clean, simple Python. "
    "You follow output formats exactly."
)

_PROGRAM_RULES = f"""Rules for every program:
- Write a complete Python function `def simple_math_problem() -> int:` whose docstring is the question.
- Compute the answer step by step, one small calculation per line, in well-named variables.
- Comments may explain a step but must never contain a calculation or a number you computed.
- Store the final answer in a variable named `result`, and end with `return result`.
- Do not print anything and do not call the function.
End every question with {END_Q} and every program with {END_P}."""

ONE_STEP = f"""Below is a grade-school math word problem.

Seed problem:
\"\"\"
{{question}}
\"\"\"

Write {{n}} new math word problems that are similar to the seed problem but different from it and
from each other: change the story, the people, the objects and the numbers, and keep the need for
several steps of reasoning. Each question must be at least 4 sentences long.
After each question, write a detailed and complete Python program that solves it.

{_PROGRAM_RULES}

Use exactly this layout for each of the {{n}} problems:
Question: <the question> {END_Q}
def simple_math_problem() -> int:
    \"\"\"<the question>\"\"\"
    <one step per line>
    result = <the final value>
    return result
{END_P}"""

REPHRASE = f"""Below is a grade-school math word problem.

Seed problem:
\"\"\"
{{question}}
\"\"\"

Rewrite it as {{n}} new problems, each a harder version of the seed: add a step or two, change
the story, the people, the objects and the numbers. Each question must be at least 4 sentences
long and must have one numeric answer. Write only the questions, no answers and no solutions.
End every question with {END_Q}."""

SOLVE_HEADER = "Solve each of the following math word problems with a Python program."

SOLVE = f"""{SOLVE_HEADER}

{{questions}}

For each problem, first copy the question exactly and end it with {END_Q}, then write its program.

{_PROGRAM_RULES}

Use exactly this layout for each problem:
Question: <the question copied> {END_Q}
def simple_math_problem() -> int:
    \"\"\"<the question>\"\"\"
    <one step per line>
    result = <the final value>
    return result
{END_P}"""


def _chat(user: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": user}]


def one_step(question: str, n: int) -> list[dict[str, str]]:
    """Chat messages asking for `n` problems similar to `question`, each with its program."""
    return _chat(ONE_STEP.format(question=question.strip(), n=n))


def rephrase(question: str, n: int) -> list[dict[str, str]]:
    """Two-step, first request: `n` harder rephrasings of `question`, questions only."""
    return _chat(REPHRASE.format(question=question.strip(), n=n))


def solve(questions: list[str]) -> list[dict[str, str]]:
    """Two-step, second request: programs for `questions`, each question copied before it."""
    listed = "\n\n".join(f"Problem {i}: {q.strip()}" for i, q in enumerate(questions, 1))
    return _chat(SOLVE.format(questions=listed))


def first_request(style: str, question: str, n: int) -> list[dict[str, str]]:
    """The first (for one-step the only) request for a seed."""
    if style == "one-step":
        return one_step(question, n)
    if style == "two-step":
        return rephrase(question, n)
    raise ValueError(f"unknown prompt style {style!r}")


def estimate_tokens(messages: list[dict[str, str]]) -> int:
    """A rough token count (4 characters per token plus framing) for client-side TPM limits."""
    return sum(len(m["content"]) // 4 + 4 for m in messages) + 3
