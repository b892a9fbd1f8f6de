"""eval and verifier_data across processes: 2 processes x 4 CPU devices (gloo on loopback).

The decode is one global data-parallel program, so two processes of four devices compute
exactly what one process of eight does (same devices, same rows per device, each sample's
random stream keyed by question and sample): the rows must be identical. Process 0 alone
executes and writes: every file is written once, by one process. The checkpoints were written
by 2 devices with their parameters split between them, so every topology here restores them
onto its own devices (as a pod-trained checkpoint is evaluated elsewhere).
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from test_eval import ckpts, read_rows  # noqa: F401  (the session's tiny checkpoints)
from test_train_cli import subprocess_env

SUPPORT = Path(__file__).resolve().parent / "multihost_support.py"
QUESTIONS = [
    ("Natalia sold 48 clips in April and half as many in May. How many clips in total?", "72"),
    ("Weng earns $12 an hour. She worked 50 minutes. How much did she earn?", "10"),
    ("A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts?", "3"),
    ("James writes a 3-page letter to 2 friends twice a week. How many pages a year?", "624"),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(devices: int, cache: Path) -> dict:
    return subprocess_env(devices, JAX_COMPILATION_CACHE_DIR=str(cache))


def launch(out: Path, commands: list[list[str]], processes: int, devices: int, cache: Path):
    """Run the CLIs `commands` in `processes` processes of `devices` CPU devices each.

    Returns, per process, the files it wrote (in order) and its stdout.
    """
    out.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    procs = []
    for i in range(processes):
        argv = []
        for k, cmd in enumerate(commands):
            argv += (["--then"] if k else []) + cmd
            if processes > 1:
                argv += ["--coordinator-address", f"127.0.0.1:{port}",
                         "--num-processes", str(processes), "--process-id", str(i)]  # fmt: skip
        log = out / f"writes.{i}"
        log.write_text("")
        procs.append((log, subprocess.Popen(
            [sys.executable, str(SUPPORT), str(log), *argv], env=_env(devices, cache),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))  # fmt: skip
    results = []
    for log, p in procs:
        stdout, stderr = p.communicate(timeout=900)
        assert p.returncode == 0, stderr[-3000:]
        assert "Event loop is closed" not in stderr and "Traceback" not in stderr, stderr[-3000:]
        results.append(([json.loads(x) for x in log.read_text().splitlines()], stdout))
        log.unlink()
    return results


@pytest.fixture(scope="module")
def runs(ckpts, tmp_path_factory):  # noqa: F811
    base = tmp_path_factory.mktemp("multihost")
    questions = base / "questions.jsonl"
    questions.write_text(
        "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS)
    )
    cache = base / "jax_cache"
    # The session's checkpoints saved again by 2 devices, each parameter split between them.
    written = {}
    for name in ("gen", "verifier"):
        written[name] = base / f"{name}_2dev"
        cmd = ["reshard", "--checkpoint", str(ckpts[name]), "--out", str(written[name])]
        launch(base / f"reshard_{name}", [cmd], 1, 2, cache)
        assert (written[name] / "checkpoints" / "0" / "params").is_dir()

    def commands(out: Path) -> list[list[str]]:
        common = [
            "--n",
            "4",
            "--max-new-tokens",
            "12",
            "--questions-per-batch",
            "2",
            "--workers",
            "1",
        ]
        return [
            ["sample", "--checkpoint", str(written["gen"]), "--prompt", "def simple_math_problem() -> int:\n",
             "--max-new-tokens", "6"],
            ["verifier_data", "--generator", str(written["gen"]), "--questions", f"jsonl:{questions}",
             "--temperatures", "0.7", *common, "--out", str(out / "vdata")],
            ["eval", "--generator", str(written["gen"]), "--verifier", str(written["verifier"]),
             "--dataset", f"jsonl:{questions}", *common, "--out", str(out / "eval")],
        ]  # fmt: skip

    got = {}
    for name, processes, devices in (("2x4", 2, 4), ("1x8", 1, 8), ("1x1", 1, 1)):
        out = base / name
        got[name] = (out, launch(out, commands(out), processes, devices, cache))
    got["commands"] = commands
    got["cache"] = cache
    got["written"] = written
    return got


OUTPUTS = (
    "vdata/candidates.jsonl",
    "vdata/stats.json",
    "eval/candidates.jsonl",
    "eval/greedy.jsonl",
)


def test_two_processes_write_exactly_what_one_process_of_eight_writes(runs):
    (out2, per_process), (out8, _) = runs["2x4"], runs["1x8"]
    for name in OUTPUTS:
        assert (out2 / name).read_text() == (out8 / name).read_text(), name
    rows = read_rows(out2 / "eval/candidates.jsonl")
    assert len(rows) == 4 * 4 and all(
        "score" in r for r in rows
    )  # the verifier scored on 8 devices
    m2, m8 = (json.loads((o / "eval/report.json").read_text()) for o in (out2, out8))
    assert m2["metrics"] == m8["metrics"] and m2["devices"] == m8["devices"] == 8
    # The report names the steps it evaluated, and where they are.
    for name in ("generator", "verifier"):
        step_dir = runs["written"]["gen" if name == "generator" else name] / "checkpoints" / "0"
        assert m2[f"{name}_step"] == m8[f"{name}_step"] == 0
        assert m2[f"{name}_checkpoint"] == str(step_dir)
    # Each file written once, by process 0 only; nothing else is left in the output directories.
    (writes0, stdout0), (writes1, stdout1) = per_process
    assert writes1 == [] and stdout1 == ""
    assert len(writes0) == len(set(writes0))
    assert {str(out2 / name) for name in OUTPUTS} <= set(writes0)
    files = lambda o: sorted(str(p.relative_to(o)) for p in o.rglob("*") if p.is_file())  # noqa: E731
    assert files(out2) == files(out8)
    assert "candidates" in stdout0 and "questions x 4 samples" in stdout0
    # sample: process 0 prints the completion (first on stdout), the same text as one process.
    _, stdout8 = runs["1x8"][1][0]
    # (no newline after it: verifier_data's summary, "16 candidates (...", follows directly).
    completion = stdout0.split("16 candidates (")[0]
    assert completion == stdout8.split("16 candidates (")[0] and len(stdout0) > len(completion)


def test_one_device_agrees_but_for_rare_floating_point_flips(runs):
    """One device holds all 8 rows of a batch instead of 1: XLA sums in another order, which can
    move a float32 logit by ~1e-6 and, where two tokens (or a uniform draw and the CDF) are that
    close, flip one sampled token and so the rest of that sample. With 4 questions x 4 samples,
    at most 2 of 16 may differ (in practice 0); the greedy decodes must all agree."""
    (out1, _), (out8, _) = runs["1x1"], runs["1x8"]
    for name in ("vdata/candidates.jsonl", "eval/candidates.jsonl"):
        a, b = read_rows(out1 / name), read_rows(out8 / name)
        assert [(r["question_id"], r["sample"]) for r in a] == [
            (r["question_id"], r["sample"]) for r in b
        ]
        differ = [(x, y) for x, y in zip(a, b) if x["code"] != y["code"]]
        assert len(differ) <= 2, name
        for x, y in zip(a, b):
            if x["code"] == y["code"]:
                assert x["answer"] == y["answer"] and x.get("correct") == y.get("correct")
                assert x.get("label") == y.get("label")
                assert x.get("logprob", 0) == pytest.approx(y.get("logprob", 0), abs=1e-4)
                assert x.get("score", 0) == pytest.approx(y.get("score", 0), abs=1e-4)
    g1, g8 = (read_rows(o / "eval/greedy.jsonl") for o in (out1, out8))
    assert [r["code"] for r in g1] == [r["code"] for r in g8]


def test_two_processes_resume_a_deleted_chunk(runs, ckpts):  # noqa: F811
    """verifier_data resumes on several hosts as on one: only the missing chunk is sampled again."""
    out, _ = runs["2x4"]
    before = (out / "vdata/candidates.jsonl").read_text()
    (chunk,) = (out / "vdata/chunks").iterdir()
    chunk.unlink()
    vdata_only = runs["commands"](out)[1:2]
    (writes0, _), (writes1, _) = launch(out, vdata_only, 2, 4, runs["cache"])
    assert writes1 == [] and str(chunk) in writes0 and len(writes0) == len(set(writes0))
    assert (out / "vdata/candidates.jsonl").read_text() == before
    # Nothing to do: no chunk is sampled or written again.
    (writes0, _), (writes1, _) = launch(out, vdata_only, 2, 4, runs["cache"])
    assert str(chunk) not in writes0 and writes1 == []


def test_verifier_data_reads_and_writes_gs_paths(ckpts, tmp_path, monkeypatch, capsys):  # noqa: F811
    """On a pod --out and the questions live in the bucket: URLs must survive (no local 'gs:/')."""
    import tempfile

    from test_remote_paths import fake_gcs

    from tinygsm_jax import verifier_data

    bucket = tmp_path / "gcs"
    (bucket / "bucket").mkdir(parents=True)
    (bucket / "bucket" / "q.jsonl").write_text(
        "".join(json.dumps({"question": q, "answer": a}) + "\n" for q, a in QUESTIONS[:2])
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    argv = ["--generator", str(ckpts["gen"]), "--questions", "jsonl:gs://bucket/q.jsonl", "--n", "2",
            "--temperatures", "0.7", "--max-new-tokens", "8", "--workers", "1", "--out", "gs://bucket/vdata"]  # fmt: skip
    with fake_gcs(bucket):
        assert verifier_data.main(argv) == 0
        assert verifier_data.main(argv) == 0  # resumed from the bucket: nothing sampled again
    assert "resuming: 1 of 1 chunks already done" in capsys.readouterr().err
    rows = read_rows(bucket / "bucket" / "vdata" / "candidates.jsonl")
    assert len(rows) == 2 * 2 and len(list((bucket / "bucket" / "vdata" / "chunks").iterdir())) == 1
    assert not (tmp_path / "gs:").exists()
