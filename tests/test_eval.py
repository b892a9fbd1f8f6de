"""`python -m tinygsm_jax.eval` and the best-of-N metrics."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest
from test_sampler import random_model

from tinygsm_jax.bestofn import (
    bootstrap_intervals,
    compute_metrics,
    joint_logprob,
    ks_for,
    majority_correct,
    pass_at_k,
    ranking_quality,
    verifier_correct,
)
from tinygsm_jax.cli import run_main


@functools.cache
def tiny_checkpoints(base: str) -> dict[str, Path]:
    """Two random generators, a random verifier and their tokenizer, saved once per session."""
    from helpers import make_tokenizer

    from tinygsm_jax.checkpoint import save_model

    base = Path(base)
    tok = make_tokenizer(base / "tok")
    paths = {"tokenizer": tok}
    for name, head, seed in (("gen", "lm", 0), ("gen2", "lm", 1), ("verifier", "value", 2)):
        paths[name] = base / name
        save_model(paths[name], random_model(head, seed), tok)
    return paths


@pytest.fixture(scope="session")
def ckpts(tmp_path_factory) -> dict[str, Path]:
    return tiny_checkpoints(str(tmp_path_factory.getbasetemp() / "tiny_ckpts"))


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as e:
        run_main(__import__("tinygsm_jax.eval", fromlist=["main"]).main, argv)
    return e.value.code


# ------------------------------------------------------------------------------------- metrics
def test_pass_at_k_is_the_unbiased_estimator():
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)  # 1 - C(3,2)/C(4,2)
    assert pass_at_k(4, 3, 2) == 1.0
    assert ks_for(48) == [1, 2, 4, 8, 16, 32, 48] and ks_for(4) == [1, 2, 4] and ks_for(1) == [1]


def test_majority_and_verifier_rules():
    def s(answer, correct, score=0.0):
        return {"answer": answer, "correct": correct, "score": score}

    # Only numeric answers vote; 3 and 3.0 are one answer; a 2-2 tie goes to 3, seen first.
    assert (
        majority_correct([s(None, False), s(3, True), s(5, False), s(3.0, True), s(5, False)])
        is True
    )
    # A 2-2 tie between 5 and 3 goes to 5, seen first.
    assert majority_correct([s(5, False), s(3, True), s(3, True), s(5, False)]) is False
    assert majority_correct([s(5, False), s(3, True), s(3, True)]) is True
    assert majority_correct([s(None, False), s(None, False)]) is False  # no number: wrong
    # Equal top scores: the first of them is picked.
    assert verifier_correct([s(1, False, 0.2), s(2, True, 0.9), s(3, False, 0.9)]) is True
    # A program that returned no number is passed over, however high its score.
    assert verifier_correct([s(None, False, 0.9), s(4, True, 0.1)]) is True
    assert verifier_correct([s(None, False, 0.9), s(None, False, 0.1)]) is False
    rows = [{"question_id": q, "sample": i, "answer": a, "correct": c, "score": sc}
            for q, samples in enumerate([[(1, True, 0.1), (2, False, 0.5)], [(None, False, 0.3), (7, True, 0.2)]])
            for i, (a, c, sc) in enumerate(samples)]  # fmt: skip
    m = compute_metrics(rows[::-1], [{"correct": True}, {"correct": False}])
    assert m == {"greedy@1": 0.5, "pass@1": 0.5, "maj@1": 0.5, "verify@1": 0.5, "random@1": 0.5,
                 "weighted@1": 0.5, "pass@2": 1.0, "maj@2": 1.0, "verify@2": 0.5, "random@2": 0.75,
                 # q0: 1 (score 0.1) and 2 (score 0.5), one sample each: 2 weighs more, wrong.
                 "weighted@2": 0.5}  # fmt: skip


def test_pick_baselines_recomputed_from_rows():
    """random@k, distinct@k and likelihood@k by hand, with duplicates and a numberless question."""

    def row(q, i, code, answer, correct, logprob):
        return {"question_id": q, "sample": i, "code": code, "answer": answer, "correct": correct,
                "logprob": logprob}  # fmt: skip

    rows = [
        # q0: the right program three times, two different wrong ones, one that did not run.
        row(0, 0, "right", 6, True, -3.0), row(0, 1, "wrong-a", 5, False, -1.0),
        row(0, 2, "right", 6, True, -3.0), row(0, 3, "wrong-b", 7, False, -4.0),
        row(0, 4, "right", 6, True, -3.0), row(0, 5, "crash", None, False, -0.5),
        # q1: no sample returned a number: wrong for every pick, whatever its likelihood.
        *(row(1, i, f"bad{i}", None, False, -0.1) for i in range(6)),
        # q2: two distinct right programs and one wrong; the right ones are the likeliest.
        row(2, 0, "r1", 2, True, -1.0), row(2, 1, "w", 3, False, -2.0), row(2, 2, "r2", 2.0, True, -0.5),
        row(2, 3, "w", 3, False, -2.0), row(2, 4, "w", 3, False, -2.0), row(2, 5, "r1", 2, True, -1.0),
    ]  # fmt: skip
    m = compute_metrics(rows)
    # q0 first 6: numeric 5 (3 right) -> 3/5; distinct right/wrong-a/wrong-b -> 1/3; the likeliest
    # numeric is wrong-a (the crash, likelier still, never counts).  q1: 0.  q2: 3/6, 2/3, right.
    assert m["random@6"] == pytest.approx((3 / 5 + 0 + 3 / 6) / 3)
    assert m["distinct@6"] == pytest.approx((1 / 3 + 0 + 2 / 3) / 3)
    assert m["likelihood@6"] == pytest.approx((0 + 0 + 1) / 3)
    # First 2 samples: q0 right + wrong-a; q2 r1 + w.
    assert m["random@2"] == pytest.approx((1 / 2 + 0 + 1 / 2) / 3)
    assert m["distinct@2"] == m["random@2"]
    assert m["likelihood@2"] == pytest.approx((0 + 0 + 1) / 3)
    assert m["random@1"] == m["distinct@1"] == m["likelihood@1"] == pytest.approx(2 / 3)
    # Within-question AUC of the log-likelihood over numeric samples only: q0 pairs (3 right x 2
    # wrong): each right -3 beats wrong-b -4 and loses to wrong-a -1; q2 (3 right x 3 wrong):
    # every right one wins.
    got = ranking_quality(rows, key="logprob")
    assert got == {"within_question_auc": pytest.approx((3 + 9) / (6 + 9)), "questions": 2}
    # Without logprob or code in the rows, those two baselines are absent, not zero.
    bare = [{k: v for k, v in r.items() if k not in ("logprob", "code")} for r in rows]
    assert not {k for k in compute_metrics(bare) if k.startswith(("likelihood", "distinct"))}


def test_ranking_quality_is_a_within_question_auc():
    def r(q, correct, score, answer=1):
        return {"question_id": q, "sample": 0, "correct": correct, "score": score, "answer": answer}

    rows = [
        r(0, True, 0.9), r(0, False, 0.1), r(0, False, 0.9),  # right beats one wrong, ties one
        r(0, False, 2.0, answer=None),  # returned no number: never picked, so not ranked
        r(1, True, 5.0), r(1, True, 4.0),  # all right: not a ranking question
        r(1, False, 9.0, answer=None),  # its only wrong sample is not numeric: still not mixed
        r(2, False, 0.0), r(2, True, -1.0),  # the wrong one scores higher
    ]  # fmt: skip
    got = ranking_quality(rows)
    assert got == {"within_question_auc": (1 + 0.5 + 0) / 3, "questions": 2}
    assert ranking_quality(rows[4:7]) == {"within_question_auc": None, "questions": 0}


# ---------------------------------------------------------------------------------------- CLI
def test_eval_gsm8k_with_verifier(shared_data, ckpts, tmp_path):
    out = tmp_path / "eval"
    argv = ["--generator", str(ckpts["gen"]), "--verifier", str(ckpts["verifier"]),
            "--dataset", f"gsm8k:{shared_data / 'gsm8k' / 'test.jsonl'}", "--limit", "3", "--n", "4",
            "--temperature", "0.7", "--max-new-tokens", "16", "--questions-per-batch", "4", "--workers", "2",
            "--out", str(out)]  # fmt: skip
    assert run(argv) == 0
    report = json.loads((out / "report.json").read_text())
    rows = read_rows(out / "candidates.jsonl")
    greedy = read_rows(out / "greedy.jsonl")
    assert (
        report["dataset"].startswith("gsm8k:")
        and report["n_questions"] == 3
        and report["n_samples"] == 4
    )
    assert set(report["metrics"]) == {"greedy@1"} | {
        f"{m}@{k}"
        for m in ("pass", "maj", "verify", "random", "distinct", "likelihood", "weighted",
                  "weighted_likelihood", "joint")
        for k in (1, 2, 4)
    }  # fmt: skip
    assert report["metrics"] == compute_metrics(rows, greedy)  # the report is re-derivable
    # Intervals for greedy@1 and every pick at k = N, re-derivable from the rows too.
    boot = report["bootstrap"]
    assert boot == {"resamples": 2000, "seed": 0, "level": 0.95}
    derived = bootstrap_intervals(rows, greedy, n_boot=boot["resamples"], seed=boot["seed"])
    assert report["intervals"] == derived["intervals"]
    assert report["vs_greedy"] == derived["vs_greedy"]
    assert set(report["intervals"]) == {"greedy@1"} | {
        k for k in report["metrics"] if k.endswith("@4")
    }
    assert set(report["vs_greedy"]) == set(report["intervals"]) - {"greedy@1"}
    assert report["verifier_ranking"] == ranking_quality(rows)
    t = report["throughput"]
    assert t["generated_tokens"] == sum(r["n_generated"] for r in rows)
    assert t["sampling_seconds"] > 0 and t["tokens_per_second"] == pytest.approx(
        t["generated_tokens"] / t["sampling_seconds"], rel=1e-2
    )
    assert len(rows) == 12 and len(greedy) == 3
    assert sorted({r["question_id"] for r in rows}) == [0, 1, 2]
    assert sorted(r["sample"] for r in rows if r["question_id"] == 1) == [0, 1, 2, 3]
    for r in rows:
        assert r["code"].startswith("def simple_math_problem() -> int:\n")
        assert (
            isinstance(r["correct"], bool) and isinstance(r["score"], float) and r["logprob"] <= 0
        )
        assert r["answer"] is None or isinstance(r["answer"], (int, float))
    assert (out / "accuracy_vs_n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "report.md").read_text()
    assert (
        "| k | pass@k (oracle) | maj@k | random@k | distinct@k | likelihood@k "
        "| weighted_likelihood@k | verify@k | weighted@k | joint@k |" in md
    )
    assert "| 4 |" in md
    assert "| pick | accuracy | 95% CI | minus greedy (points) | paired 95% CI |" in md
    lo, hi = report["intervals"]["verify@4"]
    d = report["vs_greedy"]["verify@4"]
    assert (
        f"| verify@4 | {100 * report['metrics']['verify@4']:.1f}% | {100 * lo:.1f}% to "
        f"{100 * hi:.1f}% | {100 * d['diff']:+.1f} | {100 * d['ci95'][0]:+.1f} to "
        f"{100 * d['ci95'][1]:+.1f} |" in md
    )
    assert report["likelihood_ranking"] == ranking_quality(rows, key="logprob")
    assert report["joint_ranking"] == ranking_quality(rows, key=joint_logprob)
    # The verifier's score is its output at the candidate's last body token, the last position
    # its training loss covers (the target there is EOS), reproduced here.
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.data.eval_sets import load_eval_set
    from tinygsm_jax.eval import Scorer

    scorer = Scorer(load_model(ckpts["verifier"]))
    q = load_eval_set(f"gsm8k:{shared_data / 'gsm8k' / 'test.jsonl'}")[
        rows[0]["question_id"]
    ].question
    ids = scorer.ids(q, rows[0]["code"])
    assert ids[-1] != scorer.tok.eos_token_id
    direct = scorer.graphdef and load_model(ckpts["verifier"]).model(np.asarray([ids]))[0]
    assert rows[0]["score"] == pytest.approx(float(direct[-1]), abs=1e-4)


def test_eval_svamp_without_verifier(shared_data, ckpts, tmp_path):
    out = tmp_path / "svamp"
    argv = ["--generator", str(ckpts["gen"]), "--dataset", f"svamp:{shared_data / 'svamp' / 'SVAMP.json'}",
            "--limit", "2", "--n", "2", "--max-new-tokens", "16", "--questions-per-batch", "4",
            "--workers", "1", "--out", str(out)]  # fmt: skip
    assert run(argv) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["n_questions"] == 2 and not any(
        k.startswith("verify@") for k in report["metrics"]
    )
    assert report["metrics"] == compute_metrics(
        read_rows(out / "candidates.jsonl"), read_rows(out / "greedy.jsonl")
    )


# ---------------------------------------------------------------------------------- rescoring
def test_rescoring_gives_the_full_runs_scores(shared_data, ckpts, tmp_path):
    """--from-candidates with a verifier scores saved samples as a full run with it would."""
    ds = f"gsm8k:{shared_data / 'gsm8k' / 'test.jsonl'}"
    common = ["--generator", str(ckpts["gen"]), "--dataset", ds, "--limit", "3", "--n", "4",
              "--temperature", "0.7", "--max-new-tokens", "16", "--questions-per-batch", "4",
              "--workers", "2"]  # fmt: skip
    plain, full = tmp_path / "plain", tmp_path / "full"
    assert run(common + ["--out", str(plain)]) == 0
    assert run(common + ["--verifier", str(ckpts["verifier"]), "--out", str(full)]) == 0
    rescored = tmp_path / "rescored"
    argv = ["--from-candidates", str(plain), "--verifier", str(ckpts["verifier"]),
            "--dataset", ds, "--out", str(rescored)]  # fmt: skip
    assert run(argv) == 0
    want, got = read_rows(full / "candidates.jsonl"), read_rows(rescored / "candidates.jsonl")
    assert [r["score"] for r in got] == [r["score"] for r in want]  # exactly, the same batches
    assert got == want  # every other field is the saved one (the same samples, same seed)
    assert read_rows(rescored / "greedy.jsonl") == read_rows(plain / "greedy.jsonl")
    rep, full_rep = (json.loads((d / "report.json").read_text()) for d in (rescored, full))
    for key in ("metrics", "intervals", "vs_greedy", "verifier_ranking", "likelihood_ranking"):
        assert rep[key] == full_rep[key], key
    assert rep["rescored"] == {"from": str(plain), "verifier": str(ckpts["verifier"])}
    assert (
        rep["verifier"] == str(ckpts["verifier"])
        and rep["throughput"] == json.loads((plain / "report.json").read_text())["throughput"]
    )  # sampling happened in the source run
    assert f"Rescored from `{plain}`" in (rescored / "report.md").read_text()
    assert (rescored / "accuracy_vs_n.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Without a verifier: the report derived again from the same rows, scores kept.
    again = tmp_path / "again"
    assert run(["--from-candidates", str(full), "--out", str(again)]) == 0
    assert read_rows(again / "candidates.jsonl") == want
    rep = json.loads((again / "report.json").read_text())
    assert rep["metrics"] == full_rep["metrics"] and rep["intervals"] == full_rep["intervals"]
    assert rep["rescored"] == {"from": str(full), "verifier": None}


def saved_run(tmp_path: Path, questions: list[str]) -> Path:
    """A hand-made eval output (no generator): one greedy row and two samples per question."""
    from tinygsm_jax.solution_format import make_prompt

    src = tmp_path / "src"
    src.mkdir()
    rows, greedy = [], []
    for q, question in enumerate(questions):
        for s, answer in enumerate((5, 6)):  # gold 5: sample 0 right, sample 1 wrong
            code = make_prompt(question) + f"    result = {answer}\n    return result\n"
            rows.append({"question_id": q, "sample": s, "code": code, "answer": answer,
                         "correct": answer == 5, "logprob": -1.0 - s})  # fmt: skip
        greedy.append({**rows[-2], "sample": 0})
    for name, rr in (("candidates", rows), ("greedy", greedy)):
        (src / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rr))
    report = {"dataset": "jsonl:q.jsonl", "n_questions": len(questions), "n_samples": 2,
              "temperature": 0.7, "throughput": {"generated_tokens": 0, "sampling_seconds": 0.0,
                                                 "tokens_per_second": 0.0}}  # fmt: skip
    (src / "report.json").write_text(json.dumps(report))
    return src


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_dir", "no such directory (--from-candidates takes an eval's --out)"),
        ("no_greedy", "greedy.jsonl: no such file"),
        ("bad_report", "report.json:1: not valid JSON"),
        ("not_report", "not an eval report (missing 'n_samples')"),
        ("bad_row", "candidates.jsonl:2: missing field 'code'"),
        ("short", "expected 2 questions x 2 samples (report.json), found 2 questions with [1, 2]"),
        ("other_set", "question 1 is not the one its samples were prompted with"),
        ("no_dataset", "--from-candidates with --verifier needs --dataset"),
        ("generator", "--from-candidates reuses saved samples: drop --generator"),
        ("same_out", "--out must differ from --from-candidates"),
    ],
)
def test_rescoring_bad_input_is_one_clear_line(case, message, ckpts, tmp_path, capsys):
    questions = ["What is 2 plus 3?", "What is 10 minus 5?"]
    src = saved_run(tmp_path, questions)
    data = tmp_path / "q.jsonl"
    asked = questions if case != "other_set" else [questions[0], "What is 1 plus 4?"]
    data.write_text("".join(json.dumps({"question": q, "answer": "5"}) + "\n" for q in asked))
    out = tmp_path / "out"
    argv = ["--from-candidates", str(src), "--verifier", str(ckpts["verifier"]),
            "--dataset", f"jsonl:{data}", "--out", str(out)]  # fmt: skip
    if case == "no_dir":
        argv[1] = str(tmp_path / "nothing")
    elif case == "no_greedy":
        (src / "greedy.jsonl").unlink()
    elif case == "bad_report":
        (src / "report.json").write_text("{not json")
    elif case == "not_report":
        r = json.loads((src / "report.json").read_text())
        del r["n_samples"]
        (src / "report.json").write_text(json.dumps(r))
    elif case in ("bad_row", "short"):
        lines = (src / "candidates.jsonl").read_text().splitlines()
        if case == "bad_row":
            row = json.loads(lines[1])
            del row["code"]
            lines[1] = json.dumps(row)
        else:
            del lines[1]
        (src / "candidates.jsonl").write_text("\n".join(lines) + "\n")
    elif case == "no_dataset":
        argv = argv[:4] + argv[6:]
    elif case == "generator":
        argv += ["--generator", str(ckpts["gen"])]
    elif case == "same_out":
        argv[-1] = str(src)
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not out.exists()


def test_rescoring_without_a_verifier_needs_no_checkpoint(tmp_path):
    """The report alone, derived again: hand-made rows in, their metrics and intervals out."""
    src = saved_run(tmp_path, ["What is 2 plus 3?", "What is 10 minus 5?"])
    out = tmp_path / "out"
    assert run(["--from-candidates", str(src), "--out", str(out)]) == 0
    rep = json.loads((out / "report.json").read_text())
    # Each question: sample 0 right (5), sample 1 wrong (6); the 1-1 vote goes to 5, seen first.
    assert rep["metrics"]["greedy@1"] == 1.0 and rep["metrics"]["maj@2"] == 1.0
    assert rep["metrics"]["likelihood@2"] == 1.0 and rep["metrics"]["random@2"] == 0.5
    assert rep["intervals"]["random@2"] == [0.5, 0.5]
    assert rep["vs_greedy"]["random@2"] == {"diff": -0.5, "ci95": [-0.5, -0.5]}
    assert "verify@2" not in rep["metrics"] and "verifier_ranking" not in rep
    assert "joint@2" not in rep["metrics"] and "joint_ranking" not in rep


@pytest.mark.parametrize(
    "case, message",
    [
        ("kind", "unknown kind 'mnist'"),
        ("missing", "no such file"),
        ("gen_head", "is a verifier checkpoint (head=value), expected a generator"),
        ("ver_head", "is a generator checkpoint (head=lm), expected a verifier"),
        ("no_ckpt", "no such checkpoint"),
    ],
)
def test_bad_input_is_one_clear_line(case, message, ckpts, tmp_path, capsys):
    data = tmp_path / "q.jsonl"
    data.write_text(json.dumps({"question": "What is 2 plus 3?", "answer": "5"}) + "\n")
    gen, ver, ds = str(ckpts["gen"]), None, f"jsonl:{data}"
    if case == "kind":
        ds = f"mnist:{data}"
    elif case == "missing":
        ds = f"gsm8k:{tmp_path / 'nope.jsonl'}"
    elif case == "gen_head":
        gen = str(ckpts["verifier"])
    elif case == "ver_head":
        ver = str(ckpts["gen2"])
    elif case == "no_ckpt":
        gen = str(tmp_path / "nothing")
    argv = ["--generator", gen, "--dataset", ds, "--n", "2", "--out", str(tmp_path / "out")]
    if ver:
        argv += ["--verifier", ver]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------------ sample CLI
def test_sample_cli_prints_the_greedy_completion(ckpts, capsys):
    """`python -m tinygsm_jax.sample` greedy equals a naive no-cache greedy loop, text only."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.sample import main
    from tinygsm_jax.tokenizer import load_tokenizer

    prompt = "def simple_math_problem() -> int:\n    hourly_rate = 12\n"
    with pytest.raises(SystemExit) as e:
        run_main(
            main, ["--checkpoint", str(ckpts["gen"]), "--prompt", prompt, "--max-new-tokens", "10"]
        )
    assert e.value.code == 0
    printed = capsys.readouterr().out

    loaded = load_model(ckpts["gen"])
    tok = load_tokenizer(loaded.tokenizer_dir)
    ids = tok(prompt, add_special_tokens=False)["input_ids"]
    T = len(ids) + 10
    graphdef, state = nnx.split(loaded.model)
    step = jax.jit(lambda st, toks, seg: nnx.merge(graphdef, st)(toks, None, seg))
    out = []
    for _ in range(10):
        seq = ids + out
        toks = np.zeros((1, T), np.int32)
        seg = np.zeros((1, T), np.int32)
        toks[0, : len(seq)], seg[0, : len(seq)] = seq, 1
        logits = step(state, jnp.asarray(toks), jnp.asarray(seg))[0, len(seq) - 1, : len(tok)]
        nxt = int(jnp.argmax(logits))
        if nxt == tok.eos_token_id:
            break
        out.append(nxt)
    assert printed == tok.decode(out)
    assert len(out) > 0


def test_sample_cli_rejects_a_verifier(ckpts, capsys):
    from tinygsm_jax.sample import main

    with pytest.raises(SystemExit) as e:
        run_main(
            main, ["--checkpoint", str(ckpts["verifier"]), "--prompt", "x", "--max-new-tokens", "4"]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is a verifier checkpoint" in err[0]


def test_verifier_is_read_where_it_was_trained(ckpts):
    """The scorer's position is the last one the verifier's training loss covers."""
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.data.packing import Doc, Peekable, pack_batch
    from tinygsm_jax.eval import Scorer
    from tinygsm_jax.solution_format import make_program, make_prompt
    from tinygsm_jax.train_step import last_token_mask

    scorer = Scorer(load_model(ckpts["verifier"]))
    question = "Ann has 3 apples and buys 4 more. How many apples does she have?"
    ids = scorer.ids(question, make_program(question, "    result = 3 + 4\n    return result\n"))
    prompt_len = len(scorer.tok(make_prompt(question), add_special_tokens=False)["input_ids"])
    doc = Doc(np.asarray(ids + [scorer.tok.eos_token_id], np.int32), prompt_len, 1.0, ())
    batch, placed = pack_batch(Peekable(iter([doc])), 1, 128, with_labels=True)
    last = np.asarray(last_token_mask(batch["loss_mask"], batch["segment_ids"]))[0]
    assert placed == 1 and last.sum() == 1
    assert int(np.argmax(last)) == len(ids) - 1
    assert batch["inputs"][0, len(ids) - 1] == ids[-1]
