"""The TinyGSM solution format, shared by the teacher, the data pipeline, the sampler and eval.

A solution is a Python function whose docstring is the question::

    def simple_math_problem() -> int:
        \"\"\"
        <question>
        \"\"\"
        <body computing step by step>
        result = ...
        return result

The *prompt* a generator sees is the header plus the docstring; the *target* it learns
(and later samples) is the body. Keeping both directions here means the text a model is
trained on is byte for byte the text it is prompted with at evaluation.
"""

from __future__ import annotations

import re
import textwrap

FUNCTION_NAME = "simple_math_problem"
HEADER = f"def {FUNCTION_NAME}() -> int:\n"
INDENT = "    "

_PROMPT_RE = re.compile(
    r"\A[ \t]*def[ \t]+simple_math_problem[ \t]*\([ \t]*\)[ \t]*(?:->[ \t]*[\w.\[\], ]+)?[ \t]*:[ \t]*\n"
    r"(?:[ \t]*(?P<q>\"\"\"|''')(?P<doc>.*?)(?P=q)[ \t]*\n)?",
    re.DOTALL,
)


def _escape_docstring(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"""', '\\"\\"\\"')


def make_prompt(question: str) -> str:
    """The function header and docstring for `question`: what the generator is prompted with."""
    lines = " ".join(question.split())
    doc = textwrap.indent(
        textwrap.fill(
            _escape_docstring(lines), width=100, break_on_hyphens=False, break_long_words=False
        ),
        INDENT,
    )
    return f'{HEADER}{INDENT}"""\n{doc}\n{INDENT}"""\n'


def make_program(question: str, body: str) -> str:
    """A complete program: the prompt for `question` followed by `body` (already indented)."""
    if body and not body.endswith("\n"):
        body += "\n"
    return make_prompt(question) + body


def split_program(code: str) -> tuple[str, str] | None:
    """Split a program in the TinyGSM form into (prompt, body); None if it is not in that form."""
    m = _PROMPT_RE.match(code)
    if m is None:
        return None
    return code[: m.end()], code[m.end() :]


def question_of(code: str) -> str | None:
    """The docstring of a TinyGSM program, whitespace-normalised, or None."""
    m = _PROMPT_RE.match(code)
    if m is None or m.group("doc") is None:
        return None
    return " ".join(m.group("doc").split())


def body_end(text: str) -> int | None:
    """Index where a generated body ends: the first non-blank line that is not indented.

    The sampler stops there (the function is complete); None while the body is still open.
    """
    pos = 0
    for line in text.splitlines(keepends=True):
        if line.endswith("\n") and line.strip() and not line[0].isspace():
            return pos
        pos += len(line)
    return None


# The exception type at the start of the sandbox's error text ("NameError: name 'x' is not
# defined (line 7)"); the sandbox's own messages ("answer is None", ...) begin in lower case.
_ERROR_TYPE_RE = re.compile(r"\A([A-Z]\w*)(?=: | \(line \d+\)\Z|\Z)")


def number_text(x: object) -> str | None:
    """A number as the execution line writes it: an int when integral, else the shortest float
    text after rounding away float noise (0.1 * 3 -> 0.3); None when `x` is not a number."""
    from tinygsm_jax.answers import parse_number

    v = parse_number(x)
    if v is None:
        return None
    if isinstance(v, int):
        return str(v)
    v = float(f"{v:.12g}")
    return str(int(v)) if v.is_integer() and abs(v) < 2**53 else repr(v)


def execution_line(answer: object, status: str, error: str | None = None) -> str:
    """The program's execution result as the verifier reads it, one comment line after the body.

    ``# returns 177`` when it ran and returned a number; ``# error: NameError`` when it raised
    (the exception's type, from the sandbox's error text); ``# no answer`` otherwise (returned
    no number, timed out, ran out of memory...). No trailing newline. The one definition: both
    the verifier's training data and eval's scoring build their text here.
    """
    if status == "ok":
        num = number_text(answer)
        if num is not None:
            return f"# returns {num}"
    elif status == "error" and error:
        m = _ERROR_TYPE_RE.match(error)
        if m is not None:
            return f"# error: {m.group(1)}"
    return "# no answer"
