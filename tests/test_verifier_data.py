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


# ------------------------------------------------------------------ the execution result (LEVER)
# Bodies whose execution the sandbox decides, and the line the verifier reads after each.
EXECUTED = [
    ("    result = 48 + 48 // 2\n    return result\n", "# returns 72"),
    ("    result = 50 / 60 * 12\n    return result\n", "# returns 10"),  # 10.000000000000002
    ("    result = 7 / 2\n    return result\n", "# returns 3.5"),
    ("    result = clips * 2\n    return result\n", "# error: NameError"),
    ("    result = 1 / 0\n    return result\n", "# error: ZeroDivisionError"),
    ("    return 'seventy-two'\n", "# no answer"),  # ran, returned no number
]


def test_execution_line_text():
    from tinygsm_jax.solution_format import execution_line

    assert execution_line(177, "ok") == execution_line(177.0, "ok") == "# returns 177"
    assert execution_line(0.1 * 3, "ok") == "# returns 0.3"  # float noise rounded away
    assert execution_line(-2.5, "ok", None) == "# returns -2.5"
    assert execution_line(None, "error", "NameError: name 'leo' is not defined (line 7)") == (
        "# error: NameError"
    )
    assert execution_line(None, "error", "SyntaxError: invalid syntax (line 4)") == (
        "# error: SyntaxError"
    )
    for status, error in (("error", "answer is None"), ("timeout", "killed after 5 s wall-clock"),
                          ("memory", "MemoryError: memory limit reached"), ("ok", None)):  # fmt: skip
        assert execution_line(None, status, error) == "# no answer"


def verifier_reading_execution(src: Path, dst: Path) -> Path:
    """A copy of the verifier checkpoint `src` whose model.json says it reads execution lines
    (what `train` writes for `data.execution_result=True`)."""
    import shutil

    shutil.copytree(src, dst)
    info = json.loads((dst / "model.json").read_text())
    (dst / "model.json").write_text(json.dumps({**info, "data": {"execution_result": True}}))
    return dst


def read_built_ids(out: Path) -> dict[int, list[int]]:
    """sample -> prompt ids + target ids of a built verifier data set."""
    import tensorflow_datasets as tfds

    builder = tfds.builder_from_directory(str(out))
    got = {}
    for split in builder.info.splits:
        for ex in builder.as_dataset(split=split).as_numpy_iterator():
            got[int(ex["sample"])] = [*ex["prompt_ids"].tolist(), *ex["target_ids"].tolist()]
    return got


def test_execution_line_is_the_same_in_verifier_data_and_eval(ckpts, tmp_path):  # noqa: F811
    """One program execution, two paths: verifier_data's row -> data build --execution-result
    (Candidate, layout, the builder's tokenizing) and eval's row -> the Scorer's ids. The token
    ids are equal exactly; without the option both are today's prompt + body."""
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.data.builder import build_dataset
    from tinygsm_jax.data.eval_sets import EvalItem
    from tinygsm_jax.data.schema import VERIFIER, layout, record_from_row
    from tinygsm_jax.eval import Scorer, execute_completions, execution_lines, make_sandbox
    from tinygsm_jax.solution_format import make_prompt
    from tinygsm_jax.tokenizer import load_tokenizer
    from tinygsm_jax.verifier_data import candidate_rows

    question = QUESTIONS[0]["question"]
    items, prompts = [EvalItem(question, 72, 0)], [make_prompt(question)]
    comps = [[Completion([1], body, -1.0, "eos", [-1.0], 2) for body, _ in EXECUTED]]
    with make_sandbox(1, 5.0, False) as sb:
        executed = execute_completions(sb, items, prompts, comps, "test")
    want_lines = [line for _, line in EXECUTED]

    # verifier_data's path, through its candidates.jsonl and the builder.
    cand_rows = candidate_rows(items, executed, "gen-step0", 0.7)
    src = tmp_path / "candidates.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in cand_rows))
    tok_dir = str(ckpts["tokenizer"])
    build_dataset([str(src)], str(tmp_path / "with"), tokenizer_dir=tok_dir, execution_result=True)
    build_dataset([str(src)], str(tmp_path / "plain"), tokenizer_dir=tok_dir)
    built, plain = read_built_ids(tmp_path / "with"), read_built_ids(tmp_path / "plain")
    recs = [
        record_from_row(json.loads(line), "row", kind=VERIFIER)
        for line in src.read_text().splitlines()
    ]
    assert [r.execution for r in recs] == want_lines

    # eval's path: its rows as candidates.jsonl holds them, scored by a verifier that reads them.
    eval_rows = [json.loads(json.dumps(r)) for r in executed[0]]
    lines = execution_lines(eval_rows, "eval")
    assert lines == want_lines
    reading = Scorer(load_model(verifier_reading_execution(ckpts["verifier"], tmp_path / "v")))
    default = Scorer(load_model(ckpts["verifier"]))
    assert reading.execution_result and not default.execution_result
    tok = load_tokenizer(ckpts["tokenizer"])
    eos = tok.eos_token_id
    for s, (r, line) in enumerate(zip(eval_rows, lines)):
        body = EXECUTED[s][0]
        ids = reading.ids(question, r["code"], line)
        assert built[s] == [*ids, eos]  # the builder's target ends with EOS, never an input
        assert tok.decode(ids).endswith(body + line + "\n")
        # Default: the layout and the ids are today's, whatever execution a row carries.
        today = (
            tok(prompts[0], add_special_tokens=False)["input_ids"]
            + tok(body, add_special_tokens=False)["input_ids"]
        )
        assert layout(recs[s]) == (prompts[0], body)
        assert layout(recs[s], execution_result=True) == (prompts[0], body + line + "\n")
        assert default.ids(question, r["code"], line) == default.ids(question, r["code"]) == today
        assert plain[s] == [*today, eos]
    assert json.loads((tmp_path / "with" / "metadata.json").read_text())["execution_result"] is True
    plain_meta = json.loads((tmp_path / "plain" / "metadata.json").read_text())
    assert "execution_result" not in plain_meta  # the default's metadata is today's
    plain_feats = json.loads((tmp_path / "plain" / "features.json").read_text())
    assert "execution" not in json.dumps(plain_feats)  # and so are its features
    with pytest.raises(ValueError, match="reads execution results"):
        reading([(question, eval_rows[0]["code"])])


@pytest.mark.slow
def test_verifier_trained_on_execution_results_scores_alike_in_eval_and_rescoring(
    ckpts,  # noqa: F811
    questions,
    tmp_path,
):
    """verifier_data -> data build --execution-result -> train (data.execution_result) -> eval
    with that verifier -> rescoring: the same scores, and they depend on the execution lines."""
    from test_eval import run as run_eval

    from tinygsm_jax import train
    from tinygsm_jax.checkpoint import load_model
    from tinygsm_jax.cli import UserError
    from tinygsm_jax.data.__main__ import main as data_main
    from tinygsm_jax.eval import Scorer, execution_lines

    vdata = tmp_path / "vdata"
    assert run(["--generator", str(ckpts["gen"]), "--questions", f"jsonl:{questions}", "--n", "4",
                "--temperatures", "0.7", "--max-new-tokens", "12", "--workers", "1",
                "--out", str(vdata)]) == 0  # fmt: skip
    # The random generator's samples are rarely programs (the builder skips those): add the
    # executed programs of EXECUTED for each question, through verifier_data's row writer.
    from tinygsm_jax.data.eval_sets import EvalItem
    from tinygsm_jax.eval import execute_completions, make_sandbox
    from tinygsm_jax.solution_format import make_prompt
    from tinygsm_jax.verifier_data import candidate_rows

    items = [EvalItem(q["question"], 0, i) for i, q in enumerate(QUESTIONS)]
    prompts = [make_prompt(it.question) for it in items]
    comps = [[Completion([1], body, -1.0, "eos", [-1.0], 2) for body, _ in EXECUTED]] * len(items)
    with make_sandbox(1, 5.0, False) as sb:
        executed = execute_completions(sb, items, prompts, comps, "test")
    src = tmp_path / "candidates.jsonl"
    src.write_text((vdata / "candidates.jsonl").read_text() + "".join(
        json.dumps(r) + "\n" for r in candidate_rows(items, executed, "hand", 0.7)))  # fmt: skip
    with pytest.raises(SystemExit) as e:
        run_main(data_main, ["build", "--source", str(src), "--out", str(tmp_path / "tfds"),
                             "--tokenizer", str(ckpts["tokenizer"]), "--execution-result"])  # fmt: skip
    assert e.value.code == 0
    small = ["--config.model.vocab_size=320", "--config.model.d_model=32", "--config.model.n_layers=1",
             "--config.model.n_heads=2", "--config.model.d_mlp=64", "--config.model.rotary_dim=8",
             "--config.model.max_len=256", "--config.data.seq_len=256",
             "--config.train.steps=2", "--config.train.warmup_steps=1", "--config.checkpoint.every=2",
             "--config.train.global_batch=8"]  # fmt: skip
    ver = tmp_path / "ver"
    argv = [
        "--config",
        "tiny_verifier",
        "--workdir",
        str(ver),
        f"--config.data.path={tmp_path / 'tfds'}",
        *small,
    ]
    with pytest.raises(
        UserError, match="built with --execution-result, but config.data.execution_result is False"
    ):
        train.main(argv)
    assert train.main([*argv, "--config.data.execution_result=True"]) == 0
    assert json.loads((ver / "model.json").read_text())["data"] == {"execution_result": True}

    ds = f"jsonl:{questions}"
    full, rescored = tmp_path / "eval", tmp_path / "rescored"
    assert run_eval(["--generator", str(ckpts["gen"]), "--verifier", str(ver), "--dataset", ds, "--n", "4",
                     "--max-new-tokens", "12", "--workers", "1", "--out", str(full)]) == 0  # fmt: skip
    assert run_eval(["--from-candidates", str(full), "--verifier", str(ver), "--dataset", ds,
                     "--out", str(rescored)]) == 0  # fmt: skip
    rows, again = read_rows(full / "candidates.jsonl"), read_rows(rescored / "candidates.jsonl")
    assert len(rows) == 8 and all("score" in r and "error" in r for r in rows)
    assert [r["score"] for r in again] == [r["score"] for r in rows]
    # The scores are those of the execution-line inputs: another line scores differently.
    scorer = Scorer(load_model(ver))
    pairs = [(QUESTIONS[r["question_id"]]["question"], r["code"]) for r in rows]
    lines = execution_lines(rows, "eval")
    assert [round(s, 6) for s in scorer(pairs, executions=lines)] == [r["score"] for r in rows]
    other = ["# returns 12345" if line != "# returns 12345" else "# no answer" for line in lines]
    assert scorer(pairs, executions=other) != scorer(pairs, executions=lines)
    # A run whose rows lack the error text cannot be rescored by this verifier: one line.
    old = tmp_path / "old"
    old.mkdir()
    for name in ("greedy.jsonl", "report.json"):
        (old / name).write_bytes((full / name).read_bytes())
    (old / "candidates.jsonl").write_text(
        "".join(json.dumps({k: v for k, v in r.items() if k != "error"}) + "\n" for r in rows)
    )
    if any(r["status"] == "error" for r in rows):
        assert run_eval(["--from-candidates", str(old), "--verifier", str(ver), "--dataset", ds,
                         "--out", str(tmp_path / "o2")]) == 2  # fmt: skip
