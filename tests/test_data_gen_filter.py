"""`python -m data_gen filter`: execution in the sandbox, dedup, 13-gram decontamination."""

import json
from pathlib import Path

import pytest

from data_gen import filter as dfilter
from data_gen.decontaminate import Decontaminator, words
from tinygsm_jax.cli import UserError
from tinygsm_jax.solution_format import make_program

Q = "{name} buys {a} boxes of pens. Each box holds {b} pens. She gives away {c} pens to friends. How many pens does she keep now?"


def row(i: int, question: str, body: str = "    result = 6 * 7\n    return result\n") -> dict:
    return {
        "id": f"r{i}",
        "seed_id": "s",
        "question": question,
        "code": make_program(question, body),
    }


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def filtered(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("filter")
    eval_q = "A baker makes 48 loaves of bread in the morning and sells most of them to the shops in town before noon every day."
    (tmp / "eval.jsonl").write_text(json.dumps({"question": eval_q, "answer": "#### 3"}) + "\n")
    good = Q.format(name="Mia", a=4, b=12, c=9)
    rows = [
        row(0, good, "    boxes = 4\n    pens = boxes * 12\n    result = pens - 9\n    return result\n"),
        row(1, "How many pens are left if 3 go?"),  # too short
        row(2, "Mia buys some boxes of pens and each box holds a few pens; she gives some away. How many are left?"),
        row(3, "  " + good.upper().replace(" ", "   ") + " "),  # exact duplicate after normalising
        row(4, Q.format(name="Ben", a=5, b=10, c=3), "    x = 1 / 0\n    result = x\n    return result\n"),
        row(5, Q.format(name="Zoe", a=6, b=10, c=2), "    result = 'many'\n    return result\n"),
        row(6, Q.format(name="Kai", a=7, b=10, c=1), "    while True:\n        pass\n"),
        # The evaluation question with other numbers and punctuation: still contaminated.
        row(7, "Yesterday a baker makes 1,000 loaves of bread in the morning, and sells most of them to the shops in town before noon; every day! Why?"),
        row(8, Q.format(name="Mia", a=4, b=12, c=8)),  # near duplicate of row 0 (one number differs)
        row(9, "Tom has 3 red cars and 5 blue cars in his garage, and his sister gives him 2 more green cars. How many cars now?",
            "    result = 3 + 5 + 2\n    return result\n"),
    ]  # fmt: skip
    src = tmp / "rows.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outs = {}
    for name, extra in (("plain", []), ("near", ["--near-dup", "0.5"])):
        out = tmp / name
        argv = [
            "--input",
            str(src),
            "--out",
            str(out),
            "--decontaminate",
            str(tmp / "eval.jsonl"),
            "--timeout",
            "1",
            "--workers",
            "2",
        ]
        assert dfilter.main(argv + extra) == 0
        outs[name] = (
            read_jsonl(out / "kept.jsonl"),
            read_jsonl(out / "dropped.jsonl"),
            json.loads((out / "report.json").read_text()),
        )
    return outs


def test_filter_reasons(filtered):
    kept, dropped, report = filtered["plain"]
    assert [(r["id"], r["answer"]) for r in kept] == [("r0", 39), ("r8", 42), ("r9", 10)]
    reasons = {r["id"]: r["reason"] for r in dropped}
    assert reasons == {
        "r1": "too_short",
        "r2": "no_numbers",
        "r3": "duplicate",
        "r4": "exec_error",
        "r5": "exec_error",
        "r6": "exec_timeout",
        "r7": "contaminated",
    }
    assert "ZeroDivisionError" in next(r["error"] for r in dropped if r["id"] == "r4")
    assert next(r["ngram"] for r in dropped if r["id"] == "r7").startswith(
        "a baker makes loaves of bread"
    )
    assert report["rows"] == 10 and report["kept"] == 3 and report["dropped"] == 7
    assert report["reasons"] == {
        "contaminated": 1,
        "duplicate": 1,
        "exec_error": 2,
        "exec_timeout": 1,
        "no_numbers": 1,
        "too_short": 1,
    }
    assert report["near_dup"] is None  # off by default, as in the paper


def test_near_duplicates_when_asked(filtered):
    kept, dropped, report = filtered["near"]
    assert [r["id"] for r in kept] == ["r0", "r9"]
    assert {r["id"]: r["reason"] for r in dropped}["r8"] == "near_duplicate"
    assert report["reasons"]["near_duplicate"] == 1


def test_thirteen_grams_without_punctuation_and_numbers():
    assert words("It's $1,200.50 -- 3 cats; (dogs)!") == ["its", "cats", "dogs"]
    d = Decontaminator(13)
    d.add_text(" ".join(f"w{i}" for i in range(13)))  # digits vanish: w0..w12 are all "w"
    assert d.match("w w w w w w w w w w w w w") is not None
    assert d.match("w w w w w w w w w w w w") is None  # 12 words: no 13-gram
    d2 = Decontaminator(3)
    d2.add_text("the red fox jumps")
    assert d2.match("The RED, fox!") == "the red fox"
    assert d2.match("the red dog") is None


def test_gsm8k_test_set_decontamination(shared_data, tmp_path):
    test = shared_data / "gsm8k" / "test.jsonl"
    d = Decontaminator()
    assert d.add_file(test) == 1319
    q = json.loads(test.read_text().splitlines()[5])["question"]
    altered = "".join(str((int(c) + 3) % 10) if c.isdigit() else c for c in q)  # numbers changed
    assert d.match(altered) is not None
    assert d.match(Q.format(name="Mia", a=4, b=12, c=9)) is None
    svamp = shared_data / "svamp" / "SVAMP.json"
    if svamp.exists():  # a JSON list with Body + Question
        assert d.add_file(svamp) == 1000 and len(d.sources) == 2


def test_filter_bad_input(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        dfilter.main(["--input", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "o")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(row(0, Q.format(name="A", a=1, b=2, c=3)))
        + "\n"
        + json.dumps({"question": "x"})
        + "\n"
    )
    with pytest.raises(UserError, match=r"bad.jsonl:2: missing field 'code'"):
        dfilter.main(["--input", str(bad), "--out", str(tmp_path / "o"), "--workers", "1"])
    assert not (tmp_path / "o").exists()  # nothing half-written


def test_offline_teacher_through_filter(tmp_path):
    """The offline teacher's rows pass the filter, and the sandbox agrees with their answers."""
    from data_gen import offline

    rows = list(offline.generate(40, "train", 7))
    src = tmp_path / "offline.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert dfilter.main(["--input", str(src), "--out", str(tmp_path / "f"), "--workers", "2"]) == 0
    kept = read_jsonl(tmp_path / "f" / "kept.jsonl")
    assert len(kept) == len({" ".join(r["question"].lower().split()) for r in rows})
    want = {r["id"]: r["answer"] for r in rows}
    assert all(float(r["answer"]) == pytest.approx(float(want[r["id"]])) for r in kept)
