"""Parsing real-looking teacher output into TinyGSM programs (data_gen.parse)."""

import ast

from data_gen.parse import parse_problem, parse_questions, parse_response
from data_gen.prompts import END_P, END_Q
from tinygsm_jax.solution_format import question_of, split_program


def _run(code: str):
    scope: dict = {}
    exec(code, scope)  # trusted test programs only
    return scope["simple_math_problem"]()


def _check(code: str, question: str, answer) -> None:
    assert split_program(code) is not None
    assert code.startswith("def simple_math_problem() -> int:\n")
    assert code.rstrip().endswith("return result")
    assert question_of(code) == question
    ast.parse(code)
    assert _run(code) == answer


ANSWER = f"""Sure! Here are 4 new problems similar to the seed.

**Question 1:** Tom has 5 apples. He buys 3 more apples. He eats 2 of them. How many apples are left? {END_Q}
```python
def simple_math_problem() -> int:
    \"\"\"Tom has 5 apples.\"\"\"
    apples = 5
    bought = 3
    # the apples he eats
    eaten = 2
    result = apples + bought - eaten
    return result
```
{END_P}

2. Anna reads 10 pages a day. She reads for 3 days. How many pages does she read? {END_Q}
pages = 10
days = 3
result = pages * days
print(result)
{END_P}

Question 3: Bob earns $4 an hour. He works 6 hours. What does he earn?{END_Q}
Solution:
def solution():
    rate = 4
    hours = 6
    return rate * hours

print(solution())
This program multiplies the rate by the hours.
{END_P}
Question 4: A man has 7 dogs and buys 2 more. Each dog eats 3 cans. How many cans? {END_Q}
def simple_math_problem() -> int:
    dogs = 7 + 2
    cans = dogs *"""


def test_labelled_numbered_fenced_bare_and_renamed_function():
    out = parse_response(ANSWER, truncated=True)
    assert len(out.problems) == 3
    _check(
        out.problems[0][1],
        "Tom has 5 apples. He buys 3 more apples. He eats 2 of them. How many apples are left?",
        6,
    )
    _check(
        out.problems[1][1],
        "Anna reads 10 pages a day. She reads for 3 days. How many pages does she read?",
        30,
    )
    _check(out.problems[2][1], "Bob earns $4 an hour. He works 6 hours. What does he earn?", 24)
    assert "# the apples he eats" in out.problems[0][1]  # comments kept
    assert "print" not in out.problems[1][1]
    # The cut problem of a truncated answer is rejected with its reason, the rest kept.
    assert [r["reason"] for r in out.rejects] == ["truncated"]
    assert out.rejects[0]["text"].startswith("Question 4: A man has 7 dogs")


def test_missing_last_marker_is_fine_when_not_truncated():
    text = f"Question: Ann has 4 hats and buys 5 more. How many? {END_Q}\nhats = 4\nresult = hats + 5\n"
    out = parse_response(text, truncated=False)
    assert len(out.problems) == 1 and not out.rejects
    _check(out.problems[0][1], "Ann has 4 hats and buys 5 more. How many?", 9)
    out = parse_response(text, truncated=True)
    assert not out.problems and out.rejects[0]["reason"] == "truncated"


def test_no_markers_at_all_uses_code_blocks():
    text = """Here you go:

1. Question: Sam has 3 dogs. Each eats 2 kg a week. How much food in 4 weeks?
```python
dogs = 3
kg = 2
result = dogs * kg * 4
```

2. Question: Lily has 8 pens. She gives 3 away. How many pens are left?
```python
pens = 8
result = pens - 3
```

3. Question: Max has 9 cards. He loses 4 cards. How many
```python
cards = 9
"""
    out = parse_response(text, truncated=True)
    assert [q for q, _ in out.problems] == [
        "Sam has 3 dogs. Each eats 2 kg a week. How much food in 4 weeks?",
        "Lily has 8 pens. She gives 3 away. How many pens are left?",
    ]
    assert _run(out.problems[0][1]) == 24 and _run(out.problems[1][1]) == 5
    assert [r["reason"] for r in out.rejects] == ["truncated"]


def test_whole_function_question_from_docstring_and_main_guard():
    chunk = '''```python
def simple_math_problem() -> int:
    """
    A farm has 12 cows and 3 times as many hens. How many animals are there?
    """
    cows = 12
    hens = cows * 3
    total = cows + hens
    return total

if __name__ == "__main__":
    print(simple_math_problem())
```'''
    q, code = parse_problem(chunk)
    _check(code, "A farm has 12 cows and 3 times as many hens. How many animals are there?", 48)
    assert "result = total" in code


def test_rejects_carry_reasons():
    bad = {
        "syntax_error": f"Q: Jo has 3 cats and 4 dogs. {END_Q}\nx = (3 +\ny = 2\nresult = x\n{END_P}",
        "no_result": f"Q: Jo has 3 cats and 4 dogs. {END_Q}\nx = 3\ny = 4\n{END_P}",
        "function_has_parameters": f"Q: Jo has 3 cats. {END_Q}\ndef f(n):\n    return n * 2\n{END_P}",
        "no_program": f"Q: Jo has 3 cats and 4 dogs. {END_Q}\nI am not sure how to solve this.\n{END_P}",
    }
    for reason, text in bad.items():
        out = parse_response(text)
        assert not out.problems, reason
        assert [r["reason"] for r in out.rejects] == [reason], (reason, out.rejects)


def test_docstring_quotes_are_escaped():
    text = f'Question: He said """hi""" 3 times and then 4 more times. How many? {END_Q}\nresult = 3 + 4\n{END_P}'
    ((q, code),) = parse_response(text).problems
    assert _run(code) == 7 and '"""hi"""' in q


def test_two_step_questions():
    qs, rej = parse_questions(
        f"1. Ann has 3 hats. {END_Q}\nQuestion 2: Bo has 4 caps. {END_Q}\nQuestion 3: Cy has",
        truncated=True,
    )
    assert qs == ["Ann has 3 hats.", "Bo has 4 caps."]
    assert rej == [{"reason": "truncated", "text": "Question 3: Cy has"}]
    qs, rej = parse_questions(
        "Here they are:\n1. Ann has 3 hats, 2 more than Bo.\n2. Cy has 5 caps and 2 hats."
    )
    assert qs == ["Ann has 3 hats, 2 more than Bo.", "Cy has 5 caps and 2 hats."] and not rej
