"""Answer parsing and matching: GSM8K gold, SVAMP floats, sandbox answers, model text."""

import json
from decimal import Decimal
from fractions import Fraction

import pytest

from tinygsm_jax.answers import answers_match, parse_gsm8k_gold, parse_number


@pytest.mark.parametrize(
    "text, value",
    [
        ("Natalia sold 48/2 = 24 clips.\n#### 72", 72),
        ("so the total is 1,234\n#### 1,234", 1234),
        ("#### -5", -5),
        ("#### 3.75", 3.75),
        ("#### 1,000,000", 1_000_000),
        ("####  $18", 18),
    ],
)
def test_parse_gsm8k_gold(text, value):
    got = parse_gsm8k_gold(text)
    assert got == value and type(got) is type(value)


@pytest.mark.parametrize("text", ["no answer line", "#### seventy", "#### "])
def test_parse_gsm8k_gold_rejects(text):
    with pytest.raises(ValueError):
        parse_gsm8k_gold(text)


@pytest.mark.parametrize(
    "x, value",
    [
        (42, 42),
        (14.0, 14),
        (0.5, 0.5),
        ("42", 42),
        (" -3.5 ", -3.5),
        ("1,234", 1234),
        ("$1,234.50", 1234.5),
        ("-$5", -5),
        ("12%", 12),
        ("3/4", 0.75),
        ("6/3", 2),
        ("42.", 42),
        (".5", 0.5),
        ("1e3", 1000),
        (Fraction(7, 2), 3.5),
        (Decimal("2.50"), 2.5),
        (10**30, 10**30),
    ],
)
def test_parse_number(x, value):
    assert parse_number(x) == value


@pytest.mark.parametrize(
    "x", [None, True, False, "", "abc", "12 apples", "1/0", float("nan"), float("inf"), "1,23", [1]]
)
def test_parse_number_rejects(x):
    assert parse_number(x) is None


def test_answers_match_tolerance():
    assert answers_match(0.1 * 3, 0.3)
    assert answers_match(7.499999999, "7.5")
    assert answers_match(72, "72")
    assert answers_match(72.0, 72)
    assert answers_match("1,234", 1234)
    assert answers_match(1e12 + 0.5, 1e12)  # relative tolerance on large values
    assert not answers_match(72.01, 72)
    assert not answers_match(71, 72)
    assert not answers_match(10**30 + 1, 10**30)  # ints compare exactly
    assert not answers_match(10**400, 1.0)  # beyond float range: no OverflowError
    assert not answers_match(None, 3)
    assert not answers_match(True, 1)
    assert not answers_match("seventy-two", 72)
    assert not answers_match(float("nan"), float("nan"))


def test_real_gsm8k_and_svamp_golds_parse(shared_data):
    """Every gold answer of the real data sets parses, and each matches itself."""
    rows = [json.loads(line) for line in (shared_data / "gsm8k" / "test.jsonl").open()]
    golds = [parse_gsm8k_gold(r["answer"]) for r in rows]
    assert len(golds) == 1319 and all(answers_match(g, g) for g in golds)
    svamp = json.loads((shared_data / "svamp" / "SVAMP.json").read_text())
    assert all(parse_number(p["Answer"]) is not None for p in svamp)
    assert answers_match(svamp[0]["Answer"], float(svamp[0]["Answer"]) + 1e-9)
