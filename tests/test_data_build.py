"""`python -m tinygsm_jax.data build|inspect`: JSONL + parquet mixes, verifier data, bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tinygsm_jax.cli import run_main
from tinygsm_jax.data import schema
from tinygsm_jax.data.__main__ import main
from tinygsm_jax.data.builder import is_validation
from tinygsm_jax.solution_format import make_program
from tinygsm_jax.tokenizer import save_tokenizer, tokenizer_fingerprint, train_tokenizer

ROOT = Path(__file__).resolve().parents[1]


def problem(i: int) -> dict:
    q = f"Mia has {i} marbles. She wins {i % 7 + 2} more in each of {i % 3 + 1} games. How many marbles does she have now?"
    body = f"    marbles = {i}\n    won = {i % 7 + 2} * {i % 3 + 1}\n    result = marbles + won\n    return result\n"
    return {"question": q, "code": make_program(q, body)}


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("tok") / "tok"
    texts = [t for i in range(100) for t in problem(i).values()]
    save_tokenizer(train_tokenizer(texts, 400), d)
    (d / "model.safetensors").write_bytes(b"weights")  # as in an HF model directory
    return d


def run_build(*args) -> None:
    with pytest.raises(SystemExit) as e:
        run_main(main, ["build", *map(str, args)])
    assert e.value.code == 0


def test_jsonl_and_parquet_mix_builds_and_counts(tmp_path, tok_dir, capsys):
    import tensorflow_datasets as tfds

    rows = [problem(i) for i in range(120)]
    a = write_jsonl(tmp_path / "a.jsonl", rows[:70])
    (tmp_path / "pq").mkdir()  # a directory source stands for its .jsonl/.parquet files
    b = write_parquet(tmp_path / "pq" / "b.parquet", rows[70:100])
    write_parquet(tmp_path / "pq" / "c.parquet", rows[100:])
    # A row whose code is not a TinyGSM program is skipped and reported, not fatal.
    c = write_jsonl(tmp_path / "c.jsonl", [{"question": "What is 2 + 2?", "code": "print(4)\n"}])
    b = b.parent
    out = tmp_path / "ds"
    run_build(
        "--source",
        a,
        "--source",
        b,
        "--source",
        c,
        "--out",
        out,
        "--tokenizer",
        tok_dir,
        "--validation-fraction",
        "0.25",
        "--shards",
        "3",
    )
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    n_val = sum(is_validation(r["question"], 0.25) for r in rows)
    assert 0 < n_val < 120
    assert summary.startswith(
        f"built {out}: 120 problems examples (train {120 - n_val}, validation {n_val}) from 4 files"
    )
    assert f"skipped 1 rows whose code is not a TinyGSM program (first: {c}:1)" in summary

    builder = tfds.builder_from_directory(str(out))
    assert builder.info.splits["train"].num_examples == 120 - n_val
    assert builder.info.splits["validation"].num_examples == n_val
    assert builder.info.splits["train"].num_shards == 3
    assert builder.info.metadata["kind"] == schema.PROBLEMS
    from tinygsm_jax.tokenizer import load_tokenizer

    tok = load_tokenizer(out / "tokenizer")
    assert (out / "tokenizer" / "tokenizer.json").is_file()
    assert not (out / "tokenizer" / "model.safetensors").exists()  # only the tokenizer is copied
    assert builder.info.metadata["tokenizer_fingerprint"] == tokenizer_fingerprint(tok)
    # Text and ids are both stored; prompt + target decode back to the normalised program.
    by_question = {r["question"]: r for r in rows}
    seen = set()
    for split in ("train", "validation"):
        for ex in builder.as_dataset(split=split).as_numpy_iterator():
            q = ex["question"].decode()
            assert is_validation(q, 0.25) == (split == "validation")
            assert ex["code"].decode() == by_question[q]["code"]
            assert ex["source"].decode() in ("a.jsonl", "b.parquet", "c.parquet")
            assert ex["target_ids"][-1] == tok.eos_token_id
            text = tok.decode(list(ex["prompt_ids"]) + list(ex["target_ids"][:-1]))
            assert text == by_question[q]["code"]
            seen.add(q)
    assert seen == set(by_question)

    capsys.readouterr()
    assert main(["inspect", str(out), "--json"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["num_examples"] == 120 and r["splits"] == {"train": 120 - n_val, "validation": n_val}
    assert (
        r["token_lengths"]["train"]["total"]["max"]
        >= r["token_lengths"]["train"]["total"]["mean"]
        > 10
    )
    assert r["sample"]["code"].startswith("def simple_math_problem() -> int:")


def test_verifier_candidates_build_a_verifier_data_set(tmp_path, tok_dir):
    import tensorflow_datasets as tfds

    rows = []
    for i in range(30):
        p = problem(i)
        for s in range(2):
            rows.append(
                {
                    **p,
                    "label": (i + s) % 2,
                    "checkpoint": f"step_{1000 * (s + 1)}",
                    "temperature": 0.5 + 0.2 * s,
                    "question_id": str(i),
                    "sample": s,
                }
            )
    src = write_jsonl(tmp_path / "cands.jsonl", rows)
    out = tmp_path / "vds"
    run_build("--source", src, "--out", out, "--tokenizer", tok_dir, "--validation-fraction", "0.3")
    builder = tfds.builder_from_directory(str(out))
    assert builder.info.metadata["kind"] == schema.VERIFIER
    got = []
    for split in builder.info.splits:
        for ex in builder.as_dataset(split=split).as_numpy_iterator():
            got.append(
                (
                    ex["question_id"].decode(),
                    int(ex["sample"]),
                    int(ex["label"]),
                    ex["checkpoint"].decode(),
                    round(float(ex["temperature"]), 3),
                    split,
                )
            )
    assert len(got) == 60
    for qid, s, label, ckpt, temp, _split in got:
        assert (
            label == (int(qid) + s) % 2
            and ckpt == f"step_{1000 * (s + 1)}"
            and temp == round(0.5 + 0.2 * s, 3)
        )
    # Both candidates of a question land in the same split (split by question hash).
    splits = {}
    for qid, *_, split in got:
        assert splits.setdefault(qid, split) == split


def _bad_sources(tmp: Path) -> list[tuple[Path, str]]:
    good = [json.dumps(problem(i)) for i in range(5)]
    malformed = tmp / "malformed.jsonl"
    malformed.write_text(
        "\n".join([good[0], good[1], '{"question": "q", "code": ', good[2]]) + "\n"
    )
    no_code = tmp / "no_code.jsonl"
    no_code.write_text("\n".join([good[0], json.dumps({"question": "What is 1 + 1?"})]) + "\n")
    empty = tmp / "empty.jsonl"
    empty.write_text("")
    no_cols = write_parquet(tmp / "nocols.parquet", [{"question": "q", "solution": "x"}])
    bad_label = write_jsonl(tmp / "label.jsonl", [{**problem(1), "label": 3}])
    return [
        (malformed, f"{malformed}:3: not valid JSON"),
        (no_code, f"{no_code}:2: missing field 'code'"),
        (empty, f"{empty}: empty file (no rows)"),
        (no_cols, f"{no_cols}: missing column 'code' (has: question, solution)"),
        (
            bad_label,
            f"{bad_label}:1: row is a verifier candidate (has 'label'), but the data set is of problems",
        ),
    ]


def test_bad_input_is_one_line_nonzero_exit_nothing_written(tmp_path, capsys):
    good = write_jsonl(tmp_path / "good.jsonl", [problem(i) for i in range(5)])
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    for src, message in _bad_sources(tmp_path):
        with pytest.raises(SystemExit) as e:
            run_main(
                main,
                [
                    "build",
                    "--source",
                    str(good),
                    "--source",
                    str(src),
                    "--out",
                    str(out_parent / "ds"),
                ],
            )
        assert e.value.code == 2
        last = capsys.readouterr().err.strip().splitlines()[-1]  # a progress bar may precede it
        assert last.startswith(f"error: {message}"), last
        assert list(out_parent.iterdir()) == []
    bad_label = write_jsonl(tmp_path / "label.jsonl", [{**problem(1), "label": 3}])
    with pytest.raises(SystemExit):
        run_main(main, ["build", "--source", str(bad_label), "--out", str(out_parent / "ds")])
    assert (
        capsys.readouterr().err.strip().splitlines()[-1]
        == f"error: {bad_label}:1: field 'label' must be 0 or 1, got 3"
    )
    assert list(out_parent.iterdir()) == []


def test_cli_bad_input_has_no_traceback(tmp_path):
    src = tmp_path / "x.jsonl"
    src.write_text(json.dumps(problem(1)) + "\nnot json\n")
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "tinygsm_jax.data",
            "build",
            "--source",
            str(src),
            "--out",
            str(tmp_path / "ds"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert r.returncode == 2
    assert "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(f"error: {src}:2: not valid JSON")
    assert not (tmp_path / "ds").exists()


def test_failure_while_writing_leaves_nothing(tmp_path, tok_dir, monkeypatch):
    src = write_jsonl(tmp_path / "a.jsonl", [problem(i) for i in range(40)])
    calls = []

    def exploding(record, **kw):
        calls.append(1)
        if len(calls) == 25:
            raise OSError("disk full")
        return schema.dataclasses.asdict(record) | (
            {"prompt_ids": kw["prompt_ids"], "target_ids": kw["target_ids"]}
            if kw.get("prompt_ids") is not None
            else {}
        )

    monkeypatch.setattr(schema, "example_of", exploding)
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    from tinygsm_jax.data.builder import build_dataset

    with pytest.raises(OSError, match="disk full"):
        build_dataset([str(src)], str(out_parent / "ds"), tokenizer_dir=str(tok_dir))
    assert list(out_parent.iterdir()) == []


def test_existing_output_needs_overwrite(tmp_path):
    src = write_jsonl(tmp_path / "a.jsonl", [problem(i) for i in range(3)])
    (tmp_path / "ds").mkdir()
    from tinygsm_jax.cli import UserError
    from tinygsm_jax.data.builder import build_dataset

    with pytest.raises(UserError, match="already exists"):
        build_dataset([str(src)], str(tmp_path / "ds"))
    # More shards than examples: TFDS would refuse; the split gets one shard per example.
    s = build_dataset([str(src)], str(tmp_path / "ds"), overwrite=True, shards=8)
    assert s["num_examples"] == 3 and s["shards"] == 3
    assert len(list((tmp_path / "ds").glob("tinygsm-train.tfrecord-*"))) == 3
