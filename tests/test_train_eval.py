"""Accuracy during training (`tinygsm_jax.train_eval`): logged every eval.every steps, never twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import make_tokenizer
from test_train_support import SMALL, use_synthetic

from tinygsm_jax import train
from tinygsm_jax.cli import UserError

QUESTIONS = [
    {"question": "Natalia sold 48 clips and then 24 more. How many?", "answer": "72"},
    {"question": "Weng earns 12 an hour for 5 hours. How much?", "answer": "#### 60"},
]


@pytest.fixture(scope="module")
def tok(tmp_path_factory) -> Path:
    return make_tokenizer(tmp_path_factory.mktemp("tok") / "tokenizer")


@pytest.fixture(scope="module")
def questions(tmp_path_factory) -> Path:
    p = tmp_path_factory.mktemp("q") / "questions.jsonl"
    p.write_text("".join(json.dumps(q) + "\n" for q in QUESTIONS))
    return p


def eval_args(questions: Path, every: int = 2) -> list[str]:
    return [f"--config.eval.every={every}", f"--config.eval.dataset=jsonl:{questions}",
            "--config.eval.limit=2", "--config.eval.max_new_tokens=8",
            "--config.model.max_len=256"]  # fmt: skip


def run(workdir: Path, tok: Path, *extra: str) -> int:
    with pytest.MonkeyPatch.context() as mp:
        use_synthetic(train, mp)
        return train.main(["--config", "tiny", "--workdir", str(workdir),
                           f"--config.data.path={tok}", *SMALL, *extra])  # fmt: skip


def rows(workdir: Path, event: str) -> list[dict]:
    lines = [json.loads(s) for s in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in lines if r["event"] == event]


@pytest.fixture(scope="module")
def single(tmp_path_factory, tok, questions) -> Path:
    """A 6-step run with an eval every 2 steps: one process, 8 devices."""
    workdir = tmp_path_factory.mktemp("single") / "w"
    assert run(workdir, tok, *eval_args(questions)) == 0
    return workdir


def test_eval_is_logged_every_n_steps_and_a_resume_never_repeats_one(
    single, tmp_path, tok, questions
):
    import shutil

    evals = rows(single, "eval")
    assert [r["step"] for r in evals] == [2, 4, 6]
    for r in evals:
        assert 0.0 <= r["eval_accuracy"] <= 1.0 and r["eval_questions"] == 2
        assert r["eval_accuracy"] == r["eval_correct"] / 2 and r["eval_seconds"] > 0
    tb = b"".join(p.read_bytes() for p in (single / "tensorboard").iterdir())
    assert b"eval/accuracy" in tb and b"train/loss" in tb

    workdir = tmp_path / "w"
    shutil.copytree(single, workdir)
    # Replay: the last checkpoint is lost, steps 5-6 run again; step 6's eval is logged already.
    shutil.rmtree(workdir / "checkpoints" / "6")
    assert run(workdir, tok, *eval_args(questions)) == 0
    assert [r["step"] for r in rows(workdir, "step")][-2:] == [5, 6]
    assert [r["step"] for r in rows(workdir, "eval")] == [2, 4, 6]

    # Stopped between checkpoint 6 and its eval: the resumed run evaluates step 6 first.
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    keep = [
        s for s in lines if not (json.loads(s)["event"] == "eval" and json.loads(s)["step"] == 6)
    ]
    (workdir / "metrics.jsonl").write_text("\n".join(keep) + "\n")
    assert run(workdir, tok, *eval_args(questions), "--config.train.steps=8") == 0
    assert [r["step"] for r in rows(workdir, "eval")] == [2, 4, 6, 8]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--config.eval.every=5"], "config.eval.dataset is empty"),
        (
            ["--config.eval.every=5", "--config.eval.dataset=jsonl:/nonexistent.jsonl"],
            "no such file",
        ),
        (["--config.eval.max_new_tokens=0"], "config.eval.max_new_tokens must be positive"),
    ],
)
def test_bad_eval_settings_are_one_line(tmp_path, tok, extra, message):
    with pytest.raises(UserError, match=message):
        run(tmp_path / "w", tok, *extra)


def test_the_1_3b_config_turns_it_on():
    from tinygsm_jax.config import load_config

    c = load_config("phi1_5")
    assert c.eval.every == 1000 and c.eval.dataset.startswith("gsm8k:") and c.eval.limit == 200
    assert load_config("tiny").eval.every == 0  # off by default


def test_two_processes_evaluate_once_per_step(single, tmp_path, tok, questions):
    """2 processes x 4 devices: every host decodes, process 0 alone logs each eval, once."""
    import socket
    import subprocess
    import sys

    from test_train_cli import SUPPORT, subprocess_env

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    workdir = tmp_path / "mp"
    argv = ["--config", "tiny", "--workdir", str(workdir), f"--config.data.path={tok}", *SMALL,
            *eval_args(questions), "--coordinator-address", f"127.0.0.1:{port}", "--num-processes", "2"]  # fmt: skip
    env = subprocess_env(4, JAX_COMPILATION_CACHE_DIR=str(tmp_path / "cache"))
    procs = [
        subprocess.Popen([sys.executable, str(SUPPORT), *argv, "--process-id", str(i)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(2)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=600)
        assert p.returncode == 0, err[-3000:]
    evals = rows(workdir, "eval")
    assert [r["step"] for r in evals] == [2, 4, 6]
    assert [r["eval_correct"] for r in evals] == [r["eval_correct"] for r in rows(single, "eval")]
