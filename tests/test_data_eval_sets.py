"""Evaluation sets: gsm8k:PATH, svamp:PATH, jsonl:PATH."""

import json

import pytest

from tinygsm_jax.cli import UserError
from tinygsm_jax.data.eval_sets import EvalItem, load_eval_set


def test_gsm8k_test_set(shared_data):
    items = load_eval_set(f"gsm8k:{shared_data / 'gsm8k' / 'test.jsonl'}")
    assert len(items) == 1319
    assert items[0].question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert items[0].answer == 18 and items[0].index == 0
    assert items[1] == EvalItem(
        "A robe takes 2 bolts of blue fiber and half that much white fiber.  How many bolts in total does it take?",
        3,
        1,
    )
    assert [it.index for it in items] == list(range(1319))


def test_svamp(shared_data):
    items = load_eval_set(f"svamp:{shared_data / 'svamp' / 'SVAMP.json'}")
    assert len(items) == 1000
    # Body without a final period gets one before the question.
    assert items[0].question == (
        "Each pack of dvds costs 76 dollars. If there is a discount of 25 dollars on each pack. "
        "How much do you have to pay to buy each pack?"
    )
    assert items[0].answer == 51 and items[999].index == 999


def test_jsonl(tmp_path):
    p = tmp_path / "mine.jsonl"
    rows = [
        {"question": "What is 2 + 3?", "answer": 5},
        {"question": "Half of 3?", "answer": "1.5"},
        {"question": "Big?", "answer": "#### 1,200"},
    ]
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert load_eval_set(f"jsonl:{p}") == [
        EvalItem("What is 2 + 3?", 5, 0),
        EvalItem("Half of 3?", 1.5, 1),
        EvalItem("Big?", 1200, 2),
    ]


def test_errors(tmp_path):
    with pytest.raises(UserError, match="unknown kind 'math'"):
        load_eval_set(f"math:{tmp_path}/x.jsonl")
    with pytest.raises(UserError, match="expected KIND:PATH"):
        load_eval_set("gsm8k")
    with pytest.raises(UserError, match="no such file"):
        load_eval_set(f"gsm8k:{tmp_path}/missing.jsonl")
    p = tmp_path / "g.jsonl"
    p.write_text(
        json.dumps({"question": "q?", "answer": "#### 4"})
        + "\n"
        + json.dumps({"question": "q2?", "answer": "four"})
        + "\n"
    )
    with pytest.raises(UserError, match=f"{p}:2: GSM8K answer must end with"):
        load_eval_set(f"gsm8k:{p}")
    p.write_text(json.dumps({"question": "q?", "answer": "no number"}) + "\n")
    with pytest.raises(UserError, match=f"{p}:1: answer is not a number"):
        load_eval_set(f"jsonl:{p}")
    p.write_text("")
    with pytest.raises(UserError, match="empty file"):
        load_eval_set(f"jsonl:{p}")
    s = tmp_path / "s.json"
    s.write_text(
        json.dumps([{"Body": "A b.", "Question": "C?", "Answer": 1.0}, {"Body": "x", "Answer": 2}])
    )
    with pytest.raises(UserError, match=f"{s}: item 1: missing field 'Question'"):
        load_eval_set(f"svamp:{s}")
