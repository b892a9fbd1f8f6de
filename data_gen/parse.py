"""Cut a teacher's answer into (question, program) pairs in the published TinyGSM form.

Real model output drifts from the requested layout: numbered or labelled questions
("3.", "**Question 3:**", "Q:"), a preamble ("Sure! Here are ..."), code fences, a bare
program instead of a function, a function under another name, `print(...)` at the end, a
forgotten last marker. The markers `<|endofquestion|>` / `<|endofprogram|>` are used when
present; otherwise the answer is cut at its code blocks. Every program is rebuilt with
`solution_format.make_program`, so the output is byte-for-byte the form the models train on.

A problem that cannot be used is returned as a reject with a short `reason` rather than
dropped silently: when the answer was cut by the token limit (`truncated`), the complete
problems before the cut are kept and only the cut one is rejected.
"""

from __future__ import annotations

import ast
import re
import textwrap
from dataclasses import dataclass, field

from data_gen.prompts import END_P, END_Q
from tinygsm_jax.solution_format import INDENT, make_program

# "Question 3:", "**Problem 2.**", "Q:", "#3)", "3.", "3)" at the start of a line.
_LABEL = re.compile(
    r"^[ \t]*(?:#+[ \t]*)?(?:\*\*|__)?[ \t]*"
    r"(?:(?:question|problem|q)[ \t]*#?[ \t]*\d*[ \t]*[:.)\-]|(?:question|problem)[ \t]*#?[ \t]*\d+|#?\d+[ \t]*[.):](?!\d))"
    r"[ \t]*(?:\*\*|__)?[ \t]*",
    re.IGNORECASE | re.MULTILINE,
)
# Label-only lines that introduce a program: "Solution:", "Python program:", "**Code**".
_CODE_LABEL = re.compile(
    r"^[ \t]*(?:\*\*|__)?[ \t]*(?:python[ \t]+)?(?:solution|program|code|answer)[ \t]*(?:\d+[ \t]*)?:?[ \t]*(?:\*\*|__)?[ \t]*:?[ \t]*$",
    re.IGNORECASE | re.MULTILINE,
)
_FENCE = re.compile(r"```[ \t]*[\w+-]*[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEF = re.compile(r"^def[ \t]+\w+[ \t]*\(", re.MULTILINE)
_CODE_LINE = re.compile(
    r"^[ \t]*(?:[A-Za-z_]\w*[ \t]*(?:[-+*/%]?=)(?!=)|import[ \t]|from[ \t]+\w+[ \t]+import|def[ \t])"
)


class Reject(Exception):
    """A problem that cannot be turned into a TinyGSM program; `args[0]` is the reason."""


@dataclass
class Parsed:
    """What one teacher answer yields: usable problems and rejects with reasons."""

    problems: list[tuple[str, str]] = field(default_factory=list)  # (question, code)
    rejects: list[dict] = field(default_factory=list)  # {"reason", "text"}

    def reject(self, reason: str, text: str) -> None:
        self.rejects.append({"reason": reason, "text": text.strip()})


def clean_question(text: str) -> str:
    """The question text without labels, preambles, markers, quotes and extra whitespace."""
    text = text.replace(END_Q, " ").replace(END_P, " ")
    labels = list(_LABEL.finditer(text))
    if labels:  # a preamble may precede the labelled question: keep from the last label on
        text = text[labels[-1].start() :]
    else:
        paras = [p for p in re.split(r"\n[ \t]*\n", text.strip()) if p.strip()]
        while len(paras) > 1 and paras[0].rstrip().endswith(":"):
            paras.pop(0)
        text = "\n\n".join(paras)
    for _ in range(3):
        text = _LABEL.sub("", text, count=1).strip()
    text = _CODE_LABEL.sub("", text).strip()
    text = text.strip("*_").strip()
    for q in ('"""', "'''", '"', "'"):
        if len(text) > 2 * len(q) and text.startswith(q) and text.endswith(q):
            text = text[len(q) : -len(q)]
    return " ".join(text.split())


def _code_text(text: str) -> str:
    """The code of a program part: a fenced block's content, or the text without labels."""
    m = _FENCE.search(text)
    if m:
        return m.group(1)
    return _CODE_LABEL.sub("", text).replace("```", "")


def _parse_lenient(code: str) -> tuple[ast.Module, list[str]]:
    """Parse `code`, dropping trailing prose lines ("This program computes ...") if needed."""
    lines = textwrap.dedent(code).strip("\n").splitlines()
    while lines:
        try:
            return ast.parse("\n".join(lines)), lines
        except SyntaxError:
            last = lines[-1].strip()
            try:
                ast.parse(last)
                raise Reject("syntax_error") from None  # a code line: the program is broken
            except SyntaxError:
                lines.pop()  # prose after the program
    raise Reject("no_program")


def _is_print(stmt: ast.stmt) -> bool:
    return (
        isinstance(stmt, ast.Expr)
        and isinstance(stmt.value, ast.Call)
        and isinstance(stmt.value.func, ast.Name)
        and stmt.value.func.id == "print"
    )


def _is_main_guard(stmt: ast.stmt) -> bool:
    return isinstance(stmt, ast.If) and "__name__" in ast.unparse(stmt.test)


def _assigns_result(stmts: list[ast.stmt]) -> bool:
    for stmt in stmts:
        for node in ast.walk(stmt):
            if (
                isinstance(node, ast.Name)
                and node.id == "result"
                and isinstance(node.ctx, ast.Store)
            ):
                return True
    return False


def _segment(lines: list[str], stmts: list[ast.stmt]) -> list[str]:
    """Source lines from the first to the last of `stmts` (comments between them kept)."""
    start = stmts[0].lineno - 1
    for dec in getattr(stmts[0], "decorator_list", []):
        start = min(start, dec.lineno - 1)
    return textwrap.dedent("\n".join(lines[start : stmts[-1].end_lineno])).splitlines()


def _finish(body: list[str], stmts: list[ast.stmt], lines: list[str]) -> list[str]:
    """Make the body end with `result = ...` / `return result` (the TinyGSM convention)."""
    last = stmts[-1]
    if isinstance(last, ast.Return):
        if last.value is None:
            raise Reject("no_result")
        if isinstance(last.value, ast.Name) and last.value.id == "result":
            return body
        expr = ast.get_source_segment("\n".join(lines), last.value) or ast.unparse(last.value)
        keep = _segment(lines, stmts[:-1]) if len(stmts) > 1 else []
        return keep + ["result = " + " ".join(expr.split())] + ["return result"]
    if _is_print(last) and not _assigns_result(stmts[:-1]):
        call = last.value
        if len(call.args) == 1 and not call.keywords:
            keep = _segment(lines, stmts[:-1]) if len(stmts) > 1 else []
            return keep + ["result = " + ast.unparse(call.args[0]), "return result"]
    if _assigns_result(stmts):
        return body + ["return result"]
    raise Reject("no_result")


def program_body(code_part: str) -> tuple[str, str | None]:
    """(indented body ending `return result`, docstring or None) from a program or function."""
    module, lines = _parse_lenient(_code_text(code_part))
    stmts = [s for s in module.body if not _is_main_guard(s)]
    funcs = [s for s in stmts if isinstance(s, ast.FunctionDef)]
    doc = None
    if funcs:
        fn = next((f for f in funcs if f.name == "simple_math_problem"), funcs[0])
        a = fn.args
        if a.args or a.posonlyargs or a.kwonlyargs or a.vararg or a.kwarg:
            raise Reject("function_has_parameters")
        doc = ast.get_docstring(fn)
        inner = fn.body[1:] if doc is not None else fn.body
        if not inner:
            raise Reject("empty_program")
        body = _segment(lines, inner)
        # The segment is relative to the function's lines; reparse it to fix its ending.
        sub = "\n".join(body)
        inner_mod = ast.parse(sub)
        body = _finish(body, inner_mod.body, sub.splitlines())
    else:
        while stmts and _is_print(stmts[-1]) and _assigns_result(stmts[:-1]):
            stmts.pop()
        stmts = [
            s for s in stmts if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))
        ]
        if not stmts:
            raise Reject("no_program")
        body = _segment(lines, stmts)
        sub = "\n".join(body)
        body = _finish(body, ast.parse(sub).body, sub.splitlines())
    text = "\n".join(INDENT + line if line.strip() else "" for line in body) + "\n"
    return text, doc


def parse_problem(chunk: str) -> tuple[str, str]:
    """One complete problem (question text + program) -> (question, TinyGSM program)."""
    if END_Q in chunk:
        q_part, p_part = chunk.rsplit(END_Q, 1)
        q_part = q_part.rsplit(END_Q, 1)[-1]
    else:
        starts = [m.start() for m in (_FENCE.search(chunk), _DEF.search(chunk)) if m]
        if not starts:
            for m in re.finditer(r"^.*$", chunk, re.MULTILINE):
                if _CODE_LINE.match(m.group(0)):
                    starts.append(m.start())
                    break
        if not starts:
            raise Reject("no_program")
        q_part, p_part = chunk[: min(starts)], chunk[min(starts) :]
    body, doc = program_body(p_part)
    question = clean_question(q_part) or clean_question(doc or "")
    if not question:
        raise Reject("no_question")
    code = make_program(question, body)
    try:
        ast.parse(code)
    except SyntaxError:
        raise Reject("syntax_error") from None
    return question, code


def _trivial(text: str) -> bool:
    """Closing chatter after the last problem ("Hope this helps!"): no question, no code."""
    t = text.strip()
    return not t or (END_Q not in t and "```" not in t and not _DEF.search(t) and "result" not in t)


def _blocks(text: str) -> list[tuple[int, int, bool]]:
    """(start, end, closed) of the code blocks of an answer without markers."""
    out = []
    pos = 0
    while True:
        f = _FENCE.search(text, pos)
        d = _DEF.search(text, pos)
        if f and (not d or f.start() <= d.start()):
            closed = text[f.end() - 3 : f.end()] == "```"
            out.append((f.start(), f.end(), closed))
            pos = f.end()
        elif d:
            end = d.end()
            for m in re.finditer(r"^.*(?:\n|\Z)", text[d.start() :], re.MULTILINE):
                line = m.group(0)
                if m.start() and line.strip() and not line[0].isspace():
                    break
                end = d.start() + m.end()
            out.append((d.start(), end, end < len(text.rstrip())))
            pos = max(end, d.end())
        else:
            return out
        if pos >= len(text):
            return out


def parse_response(text: str, truncated: bool = False) -> Parsed:
    """All problems of one teacher answer; `truncated`: the answer hit the token limit."""
    out = Parsed()
    text = text.replace("\r\n", "\n")
    if END_P in text:
        *chunks, tail = text.split(END_P)
        complete = [c for c in chunks if c.strip()]
    else:
        blocks = _blocks(text)
        complete, prev = [], 0
        for start, end, closed in blocks:
            if truncated and not closed and (start, end, closed) == blocks[-1]:
                break  # the cut problem: left in the tail
            complete.append(text[prev:end])
            prev = end
        tail = text[prev:]
    for chunk in complete:
        try:
            out.problems.append(parse_problem(chunk))
        except Reject as e:
            out.reject(str(e), chunk)
    if truncated and tail.strip():
        out.reject("truncated", tail)
    elif not _trivial(tail):
        try:
            out.problems.append(parse_problem(tail))
        except Reject as e:
            out.reject(str(e), tail)
    return out


def parse_questions(text: str, truncated: bool = False) -> tuple[list[str], list[dict]]:
    """Questions of a two-step rephrasing answer, and rejects (the cut one when truncated)."""
    text = text.replace("\r\n", "\n")
    rejects: list[dict] = []
    if END_Q in text:
        *parts, tail = text.split(END_Q)
    else:  # no markers: one question per label ("1.", "Question 2:")
        starts = [m.start() for m in _LABEL.finditer(text)] or [0]
        parts = [text[a:b] for a, b in zip(starts, starts[1:] + [len(text)])]
        tail = parts.pop() if truncated and parts else ""
    questions = []
    for part in parts:
        q = clean_question(part)
        if q:
            questions.append(q)
    if truncated and tail.strip():
        rejects.append({"reason": "truncated", "text": tail.strip()})
    elif END_Q in text and re.search(r"\d", tail) and len(tail.split()) >= 8:
        questions.append(clean_question(tail))  # the last question without its marker
    return questions, rejects
