"""`python -m tinygsm_jax.verifier_data`: sample, execute, label; resumable; the data schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_eval import ckpts, read_rows  # noqa: F401  (the session's tiny checkpoints)

from tinygsm_jax.cli import run_main
from tinygsm_jax.sampler import Completion

QUESTIONS = [
    {
        "question": "Natalia sold 48 clips in April and half as many in May. How many clips in total?",
        "answer": "72",
    },
    {
        "question": "Weng earns $12 an hour. She worked 50 minutes. How much did she earn?",
        "answer": "#### 10",
    },
]


def run(argv: list[str]) -> int:
    from tinygsm_jax.verifier_data import main

    with pytest.raises(SystemExit) as e:
        run_main(main, argv)
    return e.value.code


@pytest.fixture
def questions(tmp_path) -> Path:
    p = tmp_path / "questions.jsonl"
    p.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return p


def test_labels_come_from_executing_against_the_gold_answer():
    """execute_completions: prompt + body runs in the sandbox; label = answer matches gold."""
    from tinygsm_jax.data.eval_sets import EvalItem
    from tinygsm_jax.eval import execute_completions, make_sandbox
    from tinygsm_jax.solution_format import make_prompt

    items = [EvalItem("How many?", 72.0, 5)]
    bodies = ["    result = 48 + 48 // 2\n    return result\n", "    result = 48 + 48\n    return result\n",
              "    result = 1 / 0\n    return result\n", "    return 72.00000001\n"]  # fmt: skip
    comps = [[Completion([1], b, -1.0, "eos", [-1.0], 2) for b in bodies]]
    with make_sandbox(1, 5.0, False) as sb:
        rows = execute_completions(sb, items, [make_prompt("How many?")], comps, "test")[0]
    assert [r["correct"] for r in rows] == [True, False, False, True]
    assert [r["answer"] for r in rows[:3]] == [72, 96, None] and rows[2]["status"] == "error"
    assert all(
        r["question_id"] == 5 and r["code"].startswith("def simple_math_problem") for r in rows
    )


def test_verifier_data_resumes_and_feeds_the_data_pipeline(ckpts, questions, tmp_path, monkeypatch):  # noqa: F811
    from tinygsm_jax.data.schema import VERIFIER, layout, record_from_row

    out = tmp_path / "vdata"
    argv = ["--generator", str(ckpts["gen"]), str(ckpts["gen2"]), "--questions", f"jsonl:{questions}",
            "--n", "3", "--temperatures", "0.5,0.7", "--max-new-tokens", "12", "--questions-per-batch", "2",
            "--workers", "1", "--out", str(out)]  # fmt: skip
    assert run(argv) == 0
    rows = read_rows(out / "candidates.jsonl")
    assert len(rows) == 2 * 2 * 2 * 3  # checkpoints x temperatures x questions x samples
    assert {(r["checkpoint"], r["temperature"]) for r in rows} == {
        (f"{name}-step0", t) for name in ("gen", "gen2") for t in (0.5, 0.7)
    }
    for i, r in enumerate(rows):
        rec = record_from_row(r, f"row {i}", kind=VERIFIER)  # the data pipeline's candidate schema
        assert rec.label in (0, 1) and rec.question in {q["question"] for q in QUESTIONS}
        assert rec.code.startswith("def simple_math_problem() -> int:\n")
        assert layout(rec) is None or layout(rec)[0] == rec.code[: len(layout(rec)[0])]
    stats = json.loads((out / "stats.json").read_text())
    assert len(stats["chunks"]) == 4 and stats["total"]["candidates"] == 24
    assert sum(c["correct"] for c in stats["chunks"]) == sum(r["label"] for r in rows)
    assert all(0.0 <= c["accuracy"] <= 1.0 and c["candidates"] == 6 for c in stats["chunks"])

    # A rerun skips every finished chunk: nothing is loaded or sampled, the output is the same.
    chunks = sorted((out / "chunks").iterdir())
    assert len(chunks) == 4
    before = (out / "candidates.jsonl").read_text()

    def boom(*a, **k):
        raise AssertionError("a finished chunk was sampled again")

    monkeypatch.setattr("tinygsm_jax.verifier_data.load_generator", boom)
    assert run(argv) == 0
    assert (out / "candidates.jsonl").read_text() == before
    # An interrupted run leaves no partial chunk; the missing one is redone, with the same samples.
    text = chunks[1].read_text()
    chunks[1].unlink()
    monkeypatch.undo()
    assert run(argv) == 0
    assert chunks[1].read_text() == text and (out / "candidates.jsonl").read_text() == before
    leftovers = [p for p in (out / "chunks").iterdir() if p.name.startswith(".")]
    assert not leftovers  # no temporaries left


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--temperatures", "0.5,hot"], "--temperatures: expected comma-separated numbers"),
        (["--questions", "parquet:x"], "unknown kind 'parquet'"),
        (["--generator", "VERIFIER"], "is a verifier checkpoint"),
        (["--n", "0"], "--n must be at least 1"),
    ],
)
def test_bad_input_is_one_clear_line(extra, message, ckpts, questions, tmp_path, capsys):  # noqa: F811
    args = {"--generator": str(ckpts["gen"]), "--questions": f"jsonl:{questions}", "--n": "2",
            "--temperatures": "0.5", "--out": str(tmp_path / "o")}  # fmt: skip
    args[extra[0]] = str(ckpts["verifier"]) if extra[1] == "VERIFIER" else extra[1]
    argv = [x for kv in args.items() for x in kv]
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_candidates_build_into_a_verifier_tfds_set(ckpts, questions, tmp_path):  # noqa: F811
    """The documented hand-off: `python -m tinygsm_jax.data build --source DIR/candidates.jsonl`."""
    from tinygsm_jax.data.__main__ import main as data_main

    out = tmp_path / "vdata"
    argv = ["--generator", str(ckpts["gen"]), "--questions", f"jsonl:{questions}", "--n", "2",
            "--temperatures", "0.7", "--max-new-tokens", "12", "--workers", "1", "--out", str(out)]  # fmt: skip
    assert run(argv) == 0
    with pytest.raises(SystemExit) as e:
        run_main(data_main, ["build", "--source", str(out / "candidates.jsonl"), "--out", str(tmp_path / "tfds"),
                             "--tokenizer", str(ckpts["tokenizer"])])  # fmt: skip
    assert e.value.code == 0
    assert any((tmp_path / "tfds").rglob("dataset_info.json"))


def test_each_checkpoint_and_temperature_samples_its_own_stream(
    ckpts,  # noqa: F811
    questions,
    tmp_path,
    monkeypatch,
):
    """The seed is folded with the checkpoint and the temperature; a rerun draws the same
    streams; the eval's stream is none of them."""
    from tinygsm_jax.sampler import Sampler, stream_seed
    from tinygsm_jax.verifier_data import sampling_seed

    seeds: list[tuple[float, int]] = []
    real = Sampler.generate

    def spy(self, prompts, params, *a, **k):
        seeds.append((params.temperature, params.seed))
        return real(self, prompts, params, *a, **k)

    monkeypatch.setattr(Sampler, "generate", spy)
    argv = ["--generator", str(ckpts["gen"]), str(ckpts["gen2"]), "--questions", f"jsonl:{questions}",
            "--n", "2", "--temperatures", "0.5,0.7", "--max-new-tokens", "8", "--workers", "1"]  # fmt: skip
    assert run(argv + ["--out", str(tmp_path / "a")]) == 0
    assert run(argv + ["--out", str(tmp_path / "b")]) == 0
    first, second = seeds[:4], seeds[4:]
    assert first == second  # a rerun draws the same streams
    assert len({s for _, s in first}) == 4  # 2 checkpoints x 2 temperatures: 4 streams
    assert first[0][1] == sampling_seed(0, "gen-step0", 0.5)
    assert sampling_seed(0, "gen-step0", 0.5) != sampling_seed(1, "gen-step0", 0.5)
    eval_seed = stream_seed(0, "eval", 0.5)  # what `tinygsm_jax.eval --temperature 0.5` uses
    assert eval_seed not in {s for _, s in first}


def test_dedup_drops_exact_repeats_and_stats_count_them(ckpts, questions, tmp_path):  # noqa: F811
    # Temperature 0 is greedy: a question's 3 samples are one program, 2 of them repeats.
    argv = ["--generator", str(ckpts["gen"]), "--questions", f"jsonl:{questions}", "--n", "3",
            "--temperatures", "0,0.7", "--max-new-tokens", "8", "--workers", "1",
            "--out", str(tmp_path / "v")]  # fmt: skip
    assert run(argv + ["--no-dedup"]) == 0
    every = read_rows(tmp_path / "v" / "candidates.jsonl")
    stats = json.loads((tmp_path / "v" / "stats.json").read_text())
    greedy_chunk = next(c for c in stats["chunks"] if c["temperature"] == 0)
    assert greedy_chunk["duplicate_rate"] == pytest.approx(2 / 3)
    assert len(every) == 12 and stats["dedup"] is False

    assert run(argv + ["--dedup"]) == 0  # the chunks are reused; only the set is rebuilt
    kept = read_rows(tmp_path / "v" / "candidates.jsonl")
    unique = {(r["question"], r["code"]) for r in every}
    assert len(kept) == len(unique) and {(r["question"], r["code"]) for r in kept} == unique
    first_seen: dict = {}
    for r in every:
        first_seen.setdefault((r["question"], r["code"]), r)
    assert kept == list(first_seen.values())  # the first of each, in order
    stats = json.loads((tmp_path / "v" / "stats.json").read_text())
    assert stats["dedup"] is True and stats["written"]["candidates"] == len(kept)
    assert stats["written"]["duplicate_rate"] == 0.0
    assert stats["total"]["duplicate_rate"] == pytest.approx(1 - len(unique) / 12)
