"""Answer parsing and matching, shared by data filtering, verifier labelling and evaluation.

One definition of "the same answer" everywhere, so that a candidate labelled correct for the
verifier is also counted correct by eval. Gold answers come in three shapes:

* GSM8K: the solution text ends with ``#### 1,234`` (commas as thousands separators, sometimes
  a sign or a decimal point): `parse_gsm8k_gold`.
* SVAMP: a float field (``14.0``): `parse_number`.
* Ours: what the sandbox returned (int or float), or a number written as text (``"$1,234.50"``,
  ``"3/4"``, ``"12%"``... from JSONL or a model): `parse_number`.

`answers_match(pred, gold)` parses both and compares with a float tolerance: programs compute in
floating point (``0.1 * 3`` is ``0.30000000000000004``), so exact equality would mark right
answers wrong. Two numbers match when ``|pred - gold| <= max(ABS_TOL, REL_TOL * |gold|)``;
integers are compared exactly (no float rounding of huge values). Anything that does not parse
as a number (None, bool, NaN, inf, free text) never matches.
"""

from __future__ import annotations

import math
import re
from fractions import Fraction

ABS_TOL = 1e-4
REL_TOL = 1e-6

_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d*)?(?:[eE][-+]?\d+)?|[-+]?\.\d+(?:[eE][-+]?\d+)?"
_NUMBER_RE = re.compile(rf"^(?P<num>{_NUM})(?:\s*/\s*(?P<den>{_NUM}))?$")
_GOLD_RE = re.compile(r"####\s*(?P<ans>[^\n]*)")


def parse_number(x: object) -> int | float | None:
    """`x` as an int or finite float, or None when it is not a number.

    Accepts ints and floats (not bools), Fractions and Decimals, and strings such as ``"42"``,
    ``"-3.5"``, ``"1,234"``, ``"$1,234.50"``, ``"12%"`` (-> 12), ``"3/4"``, ``"42."``.
    Integral values become ints.
    """
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, int):
        return int(x)
    if isinstance(x, float):
        return _tidy(x)
    if isinstance(x, Fraction):
        return int(x) if x.denominator == 1 else _tidy(float(x))
    if not isinstance(x, str):
        try:
            return _tidy(float(x))  # Decimal, numpy scalars
        except (TypeError, ValueError, OverflowError):
            return None
    s = x.strip().replace("\u2212", "-")
    s = re.sub(r"^[$€£]|(?<=[-+])[$€£]", "", s)
    s = s.rstrip(".").removesuffix("%").strip()
    m = _NUMBER_RE.match(s)
    if m is None:
        return None
    num = _to_number(m.group("num"))
    if m.group("den") is None:
        return num
    den = _to_number(m.group("den"))
    if den == 0:
        return None
    if isinstance(num, int) and isinstance(den, int):
        return parse_number(Fraction(num, den))
    return _tidy(num / den)


def _to_number(s: str) -> int | float:
    s = s.replace(",", "")
    if re.fullmatch(r"[-+]?\d+", s):
        return int(s)
    return float(s)


def _tidy(f: float) -> int | float | None:
    if not math.isfinite(f):
        return None
    if f.is_integer() and abs(f) < 2**53:
        return int(f)
    return f


def parse_gsm8k_gold(answer: str) -> int | float:
    """The number after ``####`` in a GSM8K solution; ValueError if there is none."""
    m = _GOLD_RE.search(answer)
    if m is None:
        raise ValueError("no '#### <answer>' line in the GSM8K solution")
    value = parse_number(m.group("ans"))
    if value is None:
        raise ValueError(f"the GSM8K answer {m.group('ans')!r} is not a number")
    return value


def answers_match(pred: object, gold: object) -> bool:
    """Whether `pred` and `gold` are the same number, within the tolerance above."""
    p, g = parse_number(pred), parse_number(gold)
    if p is None or g is None:
        return False
    if isinstance(p, int) and isinstance(g, int):
        return p == g
    try:
        return abs(p - g) <= max(ABS_TOL, REL_TOL * abs(g))
    except OverflowError:  # an int beyond float range against a float: not the same number
        return False
