"""The embedded offline teacher: procedurally composed GSM8K-like problems with correct programs.

Why: the whole stack must run with no API key, and a verifier only has something to do when
the generator is unsure. Fixed templates teach a small model to copy numbers into a memorised
program (greedy ~ best-of-N). Here a problem is a random *chain* of operations over one tracked
quantity (a count of objects, money, minutes or miles):

    start (have / groups / rate / unit / compare)  ->  1..k middle steps
    (add, sub, mul, frac, pct, rate, groups, unit)  ->  an ending (ask, sell, share, compare, goal, ...)

each step worded by one of several phrasings (`data_gen.offline_templates`), with irrelevant
sentences mixed in now and then (as GSM-IC does). An unseen problem is a new composition, not
new numbers in a seen template. The program is built alongside the text, one line per quantity,
with names that follow the sentence (`bought`, `given`, `per_box`, ...), and every program is
executed once to fill `answer` with exactly what it returns.

Held out for the `test` split, never used by `train`:
  * phrasings: every pool has `train` and `test` sentences; each split draws only from its own;
  * compositions: adjacent step pairs in `HELD_OUT_PAIRS` occur only in `test` problems
    (each of which contains at least one).

Determinism: problem `i` of (split, seed) comes from `random.Random(f"{split}:{seed}:{attempt}")`,
so `generate(10)` is a prefix of `generate(100)` and ids (`offline-{split}-{seed}-{i}`) are stable.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, fields
from fractions import Fraction
from pathlib import Path

from data_gen import offline_templates as T
from tinygsm_jax.cli import UserError, atomic_path, run_main
from tinygsm_jax.solution_format import make_program

SPLITS = ("train", "test")
DOMAINS = ("items", "money", "time", "distance")

# Adjacent step pairs (position:kind) that only the test split may contain: a held-out
# composition is a new way of chaining known operations.
HELD_OUT_PAIRS: frozenset[tuple[str, str]] = frozenset(
    {
        ("m:pct", "m:rate"),
        ("m:rate", "m:pct"),
        ("m:frac", "m:groups"),
        ("m:mul", "m:frac"),
        ("m:unit", "m:pct"),
        ("m:sub", "m:mul"),
        ("s:compare", "m:mul"),
        ("s:groups", "m:frac"),
        ("s:rate", "m:pct"),
        ("m:sub", "e:times"),
        ("m:frac", "e:share"),
        ("m:mul", "e:goal"),
        ("m:groups", "e:compare"),
        ("m:add", "e:convert"),
    }
)

# Steps (computed lines) each kind adds to the program.
_START_OPS = {"have": 0, "groups": 1, "rate": 1, "unit": 1, "compare": 1}
_MID_OPS = {"add": 1, "sub": 1, "mul": 1, "frac": 2, "pct": 2, "rate": 2, "groups": 2, "unit": 2}
_END_OPS = {"ask": 0, "times": 1, "share": 1, "convert": 1, "compare": 1, "goal": 1, "together": 1}


def _kinds(domain: str, pos: str) -> list[str]:
    """Kinds with at least one phrasing pool for `domain` at position `pos` (s, m, e)."""
    prefix = f"{domain}.{pos}."
    return sorted({k[len(prefix) :].split(".")[0] for k in T.PHRASES if k.startswith(prefix)})


# Relative frequency of kinds (others weigh 1): plain asks keep problems GSM-like.
_WEIGHTS = {"s:have": 3, "e:ask": 3, "m:add": 1.5, "m:sub": 1.5}


@dataclass(frozen=True)
class Knobs:
    """Difficulty knobs. Defaults aim at a ~4M-parameter model reaching roughly 25-45% greedy."""

    min_ops: int = 2  # fewest computed lines (steps) in a program
    max_ops: int = 5  # most computed lines; the paper's GSM8K range is 2-8
    max_number: int = 40  # largest quantity stated in a sentence (start values may be larger)
    max_value: int = 1000  # largest intermediate value or answer
    distractor_rate: float = 0.3  # chance of an irrelevant sentence (and rate^2 of a second one)
    max_words: int = 80  # longest question, in words
    domains: tuple[str, ...] = DOMAINS
    # How programs are written (`STYLES`); each problem's `code` takes one of them at random.
    styles: tuple[str, ...] = ("plain",)

    def validate(self) -> Knobs:
        if not 1 <= self.min_ops <= self.max_ops:
            raise UserError(f"need 1 <= min_ops <= max_ops, got {self.min_ops} and {self.max_ops}")
        if self.max_ops > 8:
            raise UserError(f"max_ops must be at most 8, got {self.max_ops}")
        if self.max_number < 12:
            raise UserError(f"max_number must be at least 12, got {self.max_number}")
        if self.max_value < 4 * self.max_number:
            raise UserError(f"max_value must be at least 4 * max_number, got {self.max_value}")
        if not 0.0 <= self.distractor_rate <= 1.0:
            raise UserError(f"distractor_rate must be in [0, 1], got {self.distractor_rate}")
        if self.max_words < 25:
            raise UserError(f"max_words must be at least 25, got {self.max_words}")
        bad = [d for d in self.domains if d not in DOMAINS]
        if bad or not self.domains:
            raise UserError(
                f"domains must be a non-empty subset of {', '.join(DOMAINS)}, got {bad}"
            )
        bad = [x for x in self.styles if x not in STYLES]
        if bad or not self.styles:
            raise UserError(f"styles must be a non-empty subset of {', '.join(STYLES)}, got {bad}")
        return self


# Named knob sets, so a demo or a user can step difficulty without knowing every knob.
PRESETS: dict[str, dict] = {
    "easy": {"min_ops": 2, "max_ops": 3, "distractor_rate": 0.1, "max_number": 30},
    "default": {},
    "hard": {"min_ops": 3, "max_ops": 7, "distractor_rate": 0.5, "max_number": 60},
}


class _Retry(Exception):
    """The sampled numbers do not fit this step (non-integer, negative, too large): resample."""


class _Problem:
    """One problem being composed: the question's sentences and the program's lines, in step."""

    def __init__(self, rng: random.Random, split: str, domain: str, knobs: Knobs):
        self.rng, self.split, self.domain, self.knobs = rng, split, domain, knobs
        # Everyone else has the other gender, so "she"/"he" always means the protagonist.
        female = rng.random() < 0.5
        p = rng.choice(T.FEMALE if female else T.MALE)
        names = rng.sample(T.MALE if female else T.FEMALE, 4)
        items, item = rng.choice(T.ITEMS)
        other_items = rng.choice([i for i in T.ITEMS if i[0] != items])[0]
        conts, cont = rng.choice(T.CONTAINERS)
        per, pers = rng.choice(T.PERIODS)
        self.slots = {
            "P": p,
            "Q": names[0],
            "F": names[1],
            "R": names[2],
            "D": names[3],
            **T.PRONOUNS["f" if female else "m"],
            "items": items,
            "item": item,
            "Items": items.capitalize(),
            "item_var": items.replace(" ", "_"),
            "other_items": other_items,
            "conts": conts,
            "cont": cont,
            "per": per,
            "pers": pers,
            "thing": rng.choice(T.THINGS),
            "act": rng.choice(T.ACTIVITIES),
            "q": names[0].lower(),
            "r": names[2].lower(),
        }
        self.var = {
            "items": self.slots["item_var"],
            "money": "money",
            "time": "minutes",
            "distance": "miles",
        }[domain]
        self.value = Fraction(0)
        self.units: list[str] = []  # question text, one entry per step (a step may be 2 sentences)
        self.lines: list[str] = []
        self.phrases: list[str] = []
        self.used: dict[str, set[int]] = {}
        self.ops = 0
        self.other = Fraction(0)  # the compared person's quantity, for a "together" ending

    # -- wording ------------------------------------------------------------------------------
    def say(self, key: str, **nums: object) -> list[str]:
        """Word one step with a phrasing of this split; return the variable names it defines."""
        pool = T.PHRASES[f"{self.domain}.{key}"][self.split]
        used = self.used.setdefault(key, set())
        # A repeated step reads better in a different phrasing, when the pool has one.
        i = self.rng.choice([j for j in range(len(pool)) if j not in used] or range(len(pool)))
        used.add(i)
        self.phrases.append(f"{self.domain}.{key}#{self.split}{i}")
        text, _, names = pool[i].partition("|")
        slots = {**self.slots, **{k: str(v) for k, v in nums.items()}}
        self.units.append(text.format(**slots))
        return [n.format(**slots) for n in names.split(",")] if names else []

    def code(self, *lines: str, ops: int = 1) -> None:
        self.lines.extend(lines)
        self.ops += ops

    def set(self, value: Fraction) -> None:
        if value.denominator != 1 or not 0 < value <= self.knobs.max_value:
            raise _Retry
        self.value = value

    def num(self, lo: int = 2, hi: int | None = None) -> int:
        hi = self.knobs.max_number if hi is None else hi
        if hi < lo:
            raise _Retry
        return self.rng.randint(lo, hi)


# ---------------------------------------------------------------------------------- the steps
def _start(pb: _Problem, kind: str) -> None:
    v, rng = pb.var, pb.rng
    if kind == "have":
        n = pb.num(6, 3 * pb.knobs.max_number)
        pb.say("s.have", n=n)
        pb.code(f"{v} = {n}", ops=0)
        pb.set(Fraction(n))
    elif kind == "groups":
        g, k = pb.num(2, 9), pb.num(3, 12)
        a, b = pb.say("s.groups", g=g, k=k)
        pb.code(f"{a} = {g}", f"{b} = {k}", f"{v} = {a} * {b}")
        pb.set(Fraction(g * k))
    elif kind == "rate":
        r, d = pb.num(3, 25), pb.num(2, 8)
        a, b = pb.say("s.rate", r=r, d=d)
        pb.code(f"{a} = {r}", f"{b} = {d}", f"{v} = {a} * {b}")
        pb.set(Fraction(r * d))
    elif kind == "unit":
        factor = 60 if pb.domain == "time" else 12
        n = pb.num(2, 5)
        (a,) = pb.say("s.unit", n=n)
        pb.code(f"{a} = {n}", f"{v} = {a} * {factor}")
        pb.set(Fraction(n * factor))
    elif kind == "compare":
        qv = f"{pb.slots['q']}_{v}"
        n = pb.num(5, 2 * pb.knobs.max_number)
        variant = rng.choice(["times", "more", "fewer"])
        if variant == "times":
            k = rng.randint(2, 4)
            pb.say("s.compare.times", n=n, times=T.TIMES[k])
            pb.code(f"{qv} = {n}", f"{v} = {qv} * {k}")
            pb.set(Fraction(n * k))
        else:
            m = pb.num(2, min(pb.knobs.max_number, n - 1) if variant == "fewer" else None)
            (a,) = pb.say(f"s.compare.{variant}", n=n, m=m)
            sign = "+" if variant == "more" else "-"
            pb.code(f"{qv} = {n}", f"{a} = {m}", f"{v} = {qv} {sign} {a}")
            pb.set(Fraction(n + m if variant == "more" else n - m))
        pb.other = Fraction(n)
    else:
        raise AssertionError(kind)


def _pick_fraction(rng: random.Random, value: Fraction) -> tuple[int, int]:
    fits = [f for f in T.FRACTIONS if value % f[1] == 0]
    if not fits:
        raise _Retry
    return rng.choice(fits)


def _pick_percent(rng: random.Random, value: Fraction, up: bool) -> int:
    fits = [p for p in T.PERCENTS if (value * p) % 100 == 0 and (p <= 50 or not up)]
    if not fits:
        raise _Retry
    return rng.choice(fits)


def _middle(pb: _Problem, kind: str) -> None:
    v, rng, val = pb.var, pb.rng, pb.value
    if kind == "add":
        n = pb.num()
        (a,) = pb.say("m.add", n=n)
        pb.code(f"{a} = {n}", f"{v} = {v} + {a}")
        pb.set(val + n)
    elif kind == "sub":
        n = pb.num(2, min(pb.knobs.max_number, int(val) - 1))
        (a,) = pb.say("m.sub", n=n)
        pb.code(f"{a} = {n}", f"{v} = {v} - {a}")
        pb.set(val - n)
    elif kind == "mul":
        key = f"{pb.domain}.m.mul"
        k = rng.randint(2, 3)
        # Phrasings marked `x2` mean doubling whatever the sampled factor.
        pool = T.PHRASES[key][pb.split]
        if all(p.endswith("|x2") for p in pool):
            k = 2
        pb.say("m.mul", times=T.TIMES[k])
        pb.code(f"{v} = {v} * {k}")
        pb.set(val * k)
    elif kind == "frac":
        num, den = _pick_fraction(rng, val)
        word = T.FRACTIONS[(num, den)]
        (a,) = pb.say("m.frac", frac=word, Frac=word[0].upper() + word[1:])
        expr = f"{v} / {den}" if num == 1 else f"{v} * {num} / {den}"
        pb.code(f"{a} = {expr}", f"{v} = {v} - {a}", ops=2)
        pb.set(val - val * num / den)
    elif kind == "pct":
        variants = [x for x in ("down", "up") if f"{pb.domain}.m.pct.{x}" in T.PHRASES]
        up = rng.choice(variants) == "up"
        p = _pick_percent(rng, val, up)
        (a,) = pb.say(f"m.pct.{'up' if up else 'down'}", pct=p)
        pb.code(f"{a} = {v} * {p} / 100", f"{v} = {v} {'+' if up else '-'} {a}", ops=2)
        pb.set(val + val * p / 100 if up else val - val * p / 100)
    elif kind in ("rate", "groups"):
        variants = [x for x in ("up", "down") if f"{pb.domain}.m.{kind}.{x}" in T.PHRASES]
        variant = rng.choice(variants) if variants else ""
        if kind == "rate":
            x, y = pb.num(2, 25), pb.num(2, 7)
            nums = {"r": x, "d": y}
        else:
            x, y = pb.num(2, 8), pb.num(2, 12)
            nums = {"g": x, "k": y}
        a, b, c = pb.say(f"m.{kind}.{variant}" if variant else f"m.{kind}", **nums)
        sign = "-" if variant == "down" else "+"
        pb.code(f"{a} = {x}", f"{b} = {y}", f"{c} = {a} * {b}", f"{v} = {v} {sign} {c}", ops=2)
        pb.set(val - x * y if sign == "-" else val + x * y)
    elif kind == "unit":
        factor = 60 if pb.domain == "time" else 12
        n = pb.num(1, 4)
        a, b = pb.say("m.unit", n=n)
        pb.code(f"{a} = {n}", f"{b} = {a} * {factor}", f"{v} = {v} + {b}", ops=2)
        pb.set(val + n * factor)
    else:
        raise AssertionError(kind)


def _end(pb: _Problem, kind: str) -> Fraction:
    v, rng, val = pb.var, pb.rng, pb.value
    if kind == "ask":
        pb.say("e.ask")
        pb.code(f"result = {v}", ops=0)
        return val
    if kind == "times":
        p = pb.num(2, 9)
        (a,) = pb.say("e.times", p=p)
        pb.code(f"{a} = {p}", f"result = {v} * {a}")
        return val * p
    if kind == "share":
        fits = [k for k in range(2, 13) if val % k == 0 and val // k >= 2]
        if not fits:
            raise _Retry
        k = rng.choice(fits)
        (a,) = pb.say("e.share", k=k)
        pb.code(f"{a} = {k}", f"result = {v} / {a}")
        return val / k
    if kind == "convert":
        if val % 60:
            raise _Retry
        pb.say("e.convert")
        pb.code(f"result = {v} / 60")
        return val / 60
    if kind == "compare":
        n = pb.num(2, int(val) - 1)
        (a,) = pb.say("e.compare", n=n)
        pb.code(f"{a} = {n}", f"result = {v} - {a}")
        return val - n
    if kind == "goal":
        g = int(val) + pb.num(2, pb.knobs.max_number)
        (a,) = pb.say("e.goal", g=g)
        pb.code(f"{a} = {g}", f"result = {a} - {v}")
        return g - val
    if kind == "together":
        pb.say("e.together")
        pb.code(f"result = {v} + {pb.slots['q']}_{v}")
        return val + pb.other
    raise AssertionError(kind)


# ------------------------------------------------------------------------------ composition
def _weighted(rng: random.Random, pos: str, kinds: list[str]) -> str:
    return rng.choices(kinds, weights=[_WEIGHTS.get(f"{pos}:{k}", 1.0) for k in kinds])[0]


def _compose(rng: random.Random, domain: str, knobs: Knobs) -> list[str] | None:
    """A chain of `pos:kind` steps whose computed lines total a target in [min_ops, max_ops]."""
    target = rng.randint(knobs.min_ops, knobs.max_ops)
    start = _weighted(rng, "s", _kinds(domain, "s"))
    ends = [e for e in _kinds(domain, "e") if e != "together" or start == "compare"]
    end = _weighted(rng, "e", ends)
    left = target - _START_OPS[start] - _END_OPS[end]
    if left < 0 or (left == 0 and target > 1 and rng.random() < 0.7):
        return None  # prefer at least one middle step
    mids: list[str] = []
    kinds = _kinds(domain, "m")
    while left > 0:
        # A kind at most twice (mul once): "doubles, then doubles again" is not GSM8K-like.
        fits = [
            k for k in kinds if _MID_OPS[k] <= left and mids.count(k) < (1 if k == "mul" else 2)
        ]
        if not fits:
            return None
        k = _weighted(rng, "m", fits)
        mids.append(k)
        left -= _MID_OPS[k]
    return [f"s:{start}", *(f"m:{m}" for m in mids), f"e:{end}"]


def pairs(chain: list[str]) -> set[tuple[str, str]]:
    """Adjacent step pairs of a chain (what `HELD_OUT_PAIRS` is checked against)."""
    return set(zip(chain, chain[1:]))


def _insert_distractors(pb: _Problem) -> int:
    rate = pb.knobs.distractor_rate
    count = (pb.rng.random() < rate) + (pb.rng.random() < rate * rate)
    for _ in range(count):
        n = pb.num(2, 60)
        end = pb.units.pop()  # the question stays last
        pool = T.PHRASES["any.distractor"][pb.split]
        i = pb.rng.randrange(len(pool))
        pb.phrases.append(f"any.distractor#{pb.split}{i}")
        text = pool[i].format(**pb.slots, n=n)
        pb.units.insert(pb.rng.randint(1, len(pb.units)), text)
        pb.units.append(end)
    return count


# ------------------------------------------------------------------------- program styles
# TinyGSM has several solutions per question; one fixed way of writing every program teaches a
# small model a single string per problem, so its right samples repeat exactly and a verifier
# learns "looks like the memorised program" rather than "matches the question". A style
# rewrites the program's lines without changing what it computes (every variant is executed
# and must return the answer).
_CONSTANT = re.compile(r"^([a-z_][a-z0-9_]*) = (\d+)$")


def _assigned_once(lines: list[str]) -> dict[str, int]:
    """Constant lines (`name = 12`) whose name is assigned nowhere else: safe to move or inline."""
    counts = Counter(line.split(" = ", 1)[0] for line in lines)
    return {
        m.group(1): i
        for i, line in enumerate(lines)
        if (m := _CONSTANT.match(line)) and counts[m.group(1)] == 1
    }


def _constants_first(lines: list[str]) -> list[str]:
    """Every given number named up front, in question order, then the computation.

    A constant line that is its name's first assignment can move to the top: nothing before it
    reads the name (that would fail) and nothing before it writes it.
    """
    seen: set[str] = set()
    first: set[int] = set()
    for i, line in enumerate(lines):
        name = line.split(" = ", 1)[0]
        if name not in seen and _CONSTANT.match(line):
            first.add(i)
        seen.add(name)
    return [lines[i] for i in sorted(first)] + [x for i, x in enumerate(lines) if i not in first]


def _inline(lines: list[str]) -> list[str]:
    """A given number used once is written where it is used (`miles = miles + 18`)."""
    once = _assigned_once(lines)
    out, drop = list(lines), set()
    for name, i in once.items():
        uses = [j for j, x in enumerate(lines) if j != i and re.search(rf"\b{name}\b", x)]
        if len(uses) == 1 and uses[0] > i:
            value = _CONSTANT.match(lines[i]).group(2)
            j = uses[0]
            out[j] = re.sub(rf"\b{name}\b", value, out[j].split(" = ", 1)[1])
            out[j] = f"{lines[j].split(' = ', 1)[0]} = {out[j]}"
            drop.add(i)
    return [x for i, x in enumerate(out) if i not in drop]


STYLES: dict[str, object] = {
    "plain": list,  # one line per quantity, each named where the question gives it
    "constants_first": _constants_first,
    "inline": _inline,
}


def program_variants(question: str, lines: list[str]) -> dict[str, str]:
    """The problem's program in every style (`STYLES`), as full TinyGSM programs."""
    return {
        name: make_program(
            question, "".join(f"    {x}\n" for x in rewrite(lines)) + "    return result\n"
        )
        for name, rewrite in STYLES.items()
    }


def _program_value(code: str) -> object:
    """Run one of *our own* generated programs (trusted text, no model output) and return its value."""
    scope: dict = {}
    exec(compile(code, "<offline>", "exec"), scope)  # noqa: S102 - generated here, not untrusted
    return scope["simple_math_problem"]()


def _attempt(rng: random.Random, split: str, knobs: Knobs) -> dict | None:
    domain = rng.choice(knobs.domains)
    chain = _compose(rng, domain, knobs)
    if chain is None:
        return None
    held = pairs(chain) & HELD_OUT_PAIRS
    if (split == "train") == bool(held):
        return None
    pb = _Problem(rng, split, domain, knobs)
    try:
        _start(pb, chain[0][2:])
        for step in chain[1:-1]:
            _middle(pb, step[2:])
        answer = _end(pb, chain[-1][2:])
    except _Retry:
        return None
    if answer.denominator != 1 or not 0 < answer <= knobs.max_value:
        return None
    distractors = _insert_distractors(pb)
    question = " ".join(pb.units)
    if len(question.split()) > knobs.max_words:
        return None
    answer_int = int(answer)
    variants = program_variants(question, pb.lines)
    for style, code in variants.items():
        got = _program_value(code)
        if got != answer_int:  # a bug in a step or a style, never a property of the sample
            raise AssertionError(f"{style} program returns {got!r}, expected {answer_int}:\n{code}")
    # The style is drawn from its own stream, so the questions do not depend on `styles`.
    style = random.Random(f"style:{question}").choice(knobs.styles)
    extra = {}
    if len(knobs.styles) > 1:  # every distinct program of the asked styles, for the reader
        extra = {"style": style, "variants": sorted({variants[x] for x in knobs.styles})}
    return {
        "question": question,
        "code": variants[style],
        **extra,
        "answer": answer_int,
        "source": "offline",
        "split": split,
        "template": f"{domain}/" + "+".join(chain),
        "domain": domain,
        "n_ops": pb.ops,
        "distractors": distractors,
        "phrasings": pb.phrases,
    }


def generate(n: int, split: str = "train", seed: int = 0, **knobs: object) -> Iterator[dict]:
    """Yield `n` distinct problems of `split`, deterministically for `seed`.

    Rows: id, question, code (TinyGSM form), answer (what the program returns), source,
    split, template (domain and step chain), domain, n_ops, distractors, phrasings.
    Keyword arguments are `Knobs` fields (min_ops, max_ops, max_number, ...).
    """
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if not isinstance(n, int) or n < 0:
        raise UserError(f"n must be a non-negative integer, got {n!r}")
    names = {f.name for f in fields(Knobs)}
    unknown = sorted(set(knobs) - names)
    if unknown:
        raise UserError(f"unknown difficulty knob(s): {', '.join(unknown)}")
    for name in ("domains", "styles"):
        if name in knobs:
            knobs[name] = tuple(knobs[name])  # type: ignore[arg-type]
    kn = Knobs(**knobs).validate()  # type: ignore[arg-type]
    if split == "test" and kn.max_ops < 2:
        raise UserError("the test split needs max_ops >= 2 (a held-out composition is 2 steps)")
    seen: set[str] = set()
    attempt = 0
    made = 0
    failures = 0
    while made < n:
        rng = random.Random(f"{split}:{seed}:{attempt}")
        attempt += 1
        row = None
        for _ in range(200):
            row = _attempt(rng, split, kn)
            if row is not None:
                break
        if row is None or row["question"] in seen:
            failures += 1
            if failures > 1000 and failures > 10 * made:
                raise UserError("these difficulty knobs leave almost no valid problems; widen them")
            continue
        seen.add(row["question"])
        yield {"id": f"offline-{split}-{seed}-{made}", **row}
        made += 1


# ---------------------------------------------------------------------------------- stats
def stats(rows: Iterable[dict], tokenizer_vocab: int = 2048) -> dict:
    """Distribution of steps, words and (if `tokenizers` is installed) BPE length of prompt+body.

    The BPE is a byte-level tokenizer with `tokenizer_vocab` entries trained on these rows,
    the way the demo's tokenizer is, so the token counts say what fits in a model's context.
    """
    rows = list(rows)
    if not rows:
        return {"n": 0}
    words = [len(r["question"].split()) for r in rows]
    lines = [r["code"].count("\n") for r in rows]
    out: dict = {
        "n": len(rows),
        "n_ops": dict(sorted(Counter(r["n_ops"] for r in rows).items())),
        "domains": dict(sorted(Counter(r["domain"] for r in rows).items())),
        "with_distractors": round(sum(r["distractors"] > 0 for r in rows) / len(rows), 3),
        "distinct_templates": len({r["template"] for r in rows}),
        "words": _summary(words),
        "code_lines": _summary(lines),
        "answer": _summary([r["answer"] for r in rows]),
    }
    try:
        from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    except ImportError:  # pragma: no cover - tokenizers is a dependency; stats still useful
        return out
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=tokenizer_vocab,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator((r["code"] for r in rows), trainer=trainer)
    lengths = [len(e.ids) for e in tok.encode_batch([r["code"] for r in rows])]
    out["bpe_tokens"] = _summary(lengths)
    out["bpe_tokens"]["over_256"] = round(sum(x > 256 for x in lengths) / len(lengths), 4)
    return out


def _summary(xs: list[int]) -> dict:
    xs = sorted(xs)
    pick = lambda q: xs[min(len(xs) - 1, int(q * len(xs)))]  # noqa: E731
    return {
        "min": xs[0],
        "mean": round(statistics.fmean(xs), 1),
        "p50": pick(0.5),
        "p95": pick(0.95),
        "max": xs[-1],
    }


# ------------------------------------------------------------------------------------ CLI
class _Parser(argparse.ArgumentParser):
    """argparse whose errors are one `UserError` line, like every other CLI here."""

    def error(self, message: str):  # type: ignore[override]
        raise UserError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="python -m data_gen offline",
        description="Generate GSM8K-like problems with TinyGSM programs, with no API.",
    )
    p.add_argument("--n", type=int, default=1000, help="number of problems (default 1000)")
    p.add_argument("--split", choices=SPLITS, default="train")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", help="output JSONL (written atomically)")
    p.add_argument("--stats", action="store_true", help="print the distribution of steps/lengths")
    p.add_argument("--preset", choices=sorted(PRESETS), default="default",
                   help="a named set of the knobs below; explicit knobs override it")  # fmt: skip
    d = Knobs()
    p.add_argument("--min-ops", type=int, help=f"default {d.min_ops}")
    p.add_argument("--max-ops", type=int, help=f"default {d.max_ops}")
    p.add_argument("--max-number", type=int, help=f"default {d.max_number}")
    p.add_argument("--max-value", type=int, help=f"default {d.max_value}")
    p.add_argument("--distractor-rate", type=float, help=f"default {d.distractor_rate}")
    p.add_argument("--max-words", type=int, help=f"default {d.max_words}")
    p.add_argument("--domains", help=f"comma-separated subset of {','.join(d.domains)}")
    p.add_argument("--styles", help=f"comma-separated program styles, each problem written in one "
                   f"at random: {','.join(STYLES)} (default {','.join(d.styles)})")  # fmt: skip
    return p


def main(argv: list[str] | None = None) -> int:
    """`python -m data_gen offline --n N --split train|test --seed S --out FILE.jsonl`."""
    args = _parser().parse_args(argv)
    if args.n < 1:
        raise UserError(f"--n must be at least 1, got {args.n}")
    if not args.out and not args.stats:
        raise UserError("give --out FILE.jsonl (or --stats to only print the distribution)")
    knobs = dict(PRESETS[args.preset])
    for name in ("min_ops", "max_ops", "max_number", "max_value", "distractor_rate", "max_words"):
        if getattr(args, name) is not None:
            knobs[name] = getattr(args, name)
    if args.domains is not None:
        knobs["domains"] = tuple(d.strip() for d in args.domains.split(",") if d.strip())
    if args.styles is not None:
        knobs["styles"] = tuple(x.strip() for x in args.styles.split(",") if x.strip())
    Knobs(**knobs).validate()  # fail before any work
    if args.out and Path(args.out).is_dir():
        raise UserError(f"{args.out}: is a directory, expected a .jsonl file path")
    from tqdm import tqdm

    rows: list[dict] = []
    bar = tqdm(generate(args.n, args.split, args.seed, **knobs), total=args.n, unit="problem",
               desc=f"offline {args.split}", disable=None)  # fmt: skip
    if args.out:
        with atomic_path(args.out) as tmp, tmp.open("w", encoding="utf-8") as f:
            for row in bar:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                rows.append(row)
    else:
        rows = list(bar)
    summary = stats(rows) if args.stats else None
    if summary is not None:
        print(json.dumps(summary, indent=2))
    ops = statistics.fmean(r["n_ops"] for r in rows)
    words = statistics.fmean(len(r["question"].split()) for r in rows)
    where = f" to {args.out}" if args.out else ""
    print(
        f"offline teacher: {len(rows)} {args.split} problems (seed {args.seed}){where}; "
        f"{len({r['template'] for r in rows})} step chains, mean {ops:.2f} steps, "
        f"{words:.0f} words, {sum(r['distractors'] > 0 for r in rows) / len(rows):.0%} with distractors",
        file=sys.stderr,
    )
    return 0


def knob_defaults() -> dict:
    """The default difficulty knobs, for docs and the demo's config."""
    return asdict(Knobs())


if __name__ == "__main__":
    run_main(main)
