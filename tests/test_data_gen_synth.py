"""`python -m data_gen synth` against a local OpenAI-compatible server over real HTTP.

The server (data_gen.fake_server) runs on loopback in a thread; the real `openai` client
talks to it. Faults: 429 with retry-after, 500, slow answers past the client timeout,
dropped connections, answers cut by the token limit; and kill -9 of a real subprocess.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from data_gen import synth
from data_gen.client import RateLimiter
from data_gen.fake_server import FakeOpenAI, Faults
from data_gen.store import Store
from tinygsm_jax.cli import UserError, run_main
from tinygsm_jax.solution_format import split_program

ROOT = Path(__file__).resolve().parents[1]


def write_seeds(path: Path, n: int, start: int = 0) -> Path:
    with path.open("w") as f:
        for i in range(start, start + n):
            f.write(
                json.dumps(
                    {"id": f"s{i}", "question": f"Seed {i}: Jo has {i + 2} cats and buys 3 more."}
                )
                + "\n"
            )
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def server():
    s = FakeOpenAI().start()
    yield s
    s.stop()


@pytest.fixture(autouse=True)
def _key(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


def chat_requests(server: FakeOpenAI) -> list[dict]:
    """One log entry per request received (the entry that records the fault decision)."""
    return [e for e in server.log if e["path"] == "chat" and "fault" in e]


def test_faults_every_seed_done_truncated_rejected(tmp_path, server):
    server.faults = Faults(
        p429=0.2,
        retry_after=0.3,
        p500=0.15,
        pdrop=0.1,
        pslow=0.1,
        slow_s=2.0,
        ptruncate=0.3,
        seed=1,
    )
    seeds = write_seeds(tmp_path / "seeds.jsonl", 12)
    out = tmp_path / "out"
    argv = [
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--model",
        "gpt-4o-mini",
        "--base-url",
        server.base_url,
    ]
    argv += ["--concurrency", "4", "--timeout", "1.0", "--backoff", "0.02"]
    assert synth.main(argv) == 0

    problems = read_jsonl(out / "problems.jsonl")
    rejects = read_jsonl(out / "rejects.jsonl")
    summary = json.loads((out / "summary.json").read_text())
    reqs = chat_requests(server)
    faults = Counter(e["fault"] for e in reqs)
    assert faults["429"] and faults["500"] and faults["drop"] and faults["slow"], (
        faults
    )  # all were injected

    # Every seed done, each problem once, every program in the published form.
    assert {p["seed_id"] for p in problems} == {f"s{i}" for i in range(12)}
    assert len({p["id"] for p in problems}) == len(problems)
    for p in problems:
        prompt, body = split_program(p["code"])
        assert body.rstrip().endswith("return result") and p["question"] in " ".join(prompt.split())
    # Truncated answers: the complete problems kept, the cut one rejected with its reason.
    per_seed = Counter(p["seed_id"] for p in problems)
    truncated = {r["seed_id"] for r in rejects}
    assert truncated and all(r["reason"] == "truncated" for r in rejects)
    assert len(rejects) == len(truncated)
    for sid, n in per_seed.items():
        assert n == (8 if sid in truncated else 10), (sid, n)
    # Accounting: every request and retry is counted; retries are exactly the faults.
    assert summary["requests"] == len(reqs)
    assert summary["retries"] == sum(faults[k] for k in ("429", "500", "drop", "slow"))
    assert summary["seeds_done"] == 12 and summary["seeds_failed"] == 0
    assert summary["problems"] == len(problems) and summary["reject_reasons"] == {
        "truncated": len(rejects)
    }
    assert summary["tokens_out"] > 0 and summary["cost_usd"] == pytest.approx(
        (summary["tokens_in"] * 0.15 + summary["tokens_out"] * 0.60) / 1e6, rel=1e-3
    )
    # A 429's retry-after is honoured: the seed's next request comes no sooner.
    by_seed: dict[str, list[dict]] = {}
    for e in reqs:
        by_seed.setdefault(e["seed"], []).append(e)
    for entries in by_seed.values():
        for a, b in zip(entries, entries[1:]):
            if a["fault"] == "429":
                assert b["t"] - a["t"] >= 0.3 - 0.02


def test_rate_limit_respected(tmp_path, server):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 9)
    argv = [
        "--seeds",
        str(seeds),
        "--out",
        str(tmp_path / "out"),
        "--model",
        "m",
        "--base-url",
        server.base_url,
    ]
    assert synth.main(argv + ["--concurrency", "8", "--rpm", "300"]) == 0  # one start every 0.2 s
    times = sorted(e["t"] for e in chat_requests(server))
    assert len(times) == 9
    for i in range(len(times)):  # any span holds at most span / interval + 2 starts
        for j in range(i + 1, len(times)):
            assert j - i <= (times[j] - times[i] + 0.03) / 0.2 + 2, times
    assert times[-1] - times[0] <= 8 * 0.2 + 0.3  # and the limit is reached, not undershot


def test_rate_limiter_tokens():
    async def go() -> float:
        lim = RateLimiter(per_minute=6000)  # 100 tokens/s
        t = time.monotonic()
        for _ in range(4):
            await lim.acquire(25)
        lim.adjust(-25)  # the last answer used fewer tokens than charged
        await lim.acquire(25)
        return time.monotonic() - t

    assert 0.74 <= asyncio.run(go()) <= 1.2  # 0.25 s per 25 tokens after the first, one refunded


def test_two_step(tmp_path, server):
    seeds = write_seeds(tmp_path / "seeds.jsonl", 3)
    out = tmp_path / "out"
    argv = [
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--model",
        "m",
        "--base-url",
        server.base_url,
        "--prompt",
        "two-step",
    ]
    assert synth.main(argv + ["--variants", "4"]) == 0
    kinds = Counter(e["kind"] for e in chat_requests(server))
    assert kinds == {"rephrase": 3, "solve": 3}
    problems = read_jsonl(out / "problems.jsonl")
    assert len(problems) == 12 and len({p["id"] for p in problems}) == 12
    assert len(read_jsonl(out / "stage1.jsonl")) == 3
    # Resuming with other settings would mix two kinds of output: refused.
    with pytest.raises(UserError, match="prompt"):
        synth.main(argv[:-2] + ["--prompt", "one-step"])


def test_store_recovers_from_torn_writes(tmp_path):
    with Store(tmp_path) as st:
        st.commit("a", [("q1", "c1"), ("q2", "c2")], [], {"requests": 1})
    # A crash mid-commit: rows of seed "b" written, its journal line torn.
    with (tmp_path / "problems.jsonl").open("a") as f:
        f.write(
            json.dumps({"id": "b-0", "seed_id": "b", "question": "q", "code": "c"})
            + '\n{"id": "b-1"'
        )
    with (tmp_path / "journal.jsonl").open("a") as f:
        f.write('{"seed_id": "b", "problems_e')
    with Store(tmp_path) as st:
        assert st.done == {"a"} and st.totals["problems"] == 2
        st.commit("b", [("q3", "c3")], [{"reason": "truncated", "text": "x"}], {"requests": 2})
        st.commit("b", [("q3", "c3")], [], {})  # a second commit of a done seed is a no-op
    rows = read_jsonl(tmp_path / "problems.jsonl")
    assert [r["id"] for r in rows] == ["a-0", "a-1", "b-0"]
    assert len(read_jsonl(tmp_path / "journal.jsonl")) == 2
    # Only one writer at a time.
    with Store(tmp_path), pytest.raises(UserError, match="in use"):
        Store(tmp_path).open()


def _cli(args: list[str], **kw) -> subprocess.Popen:
    env = dict(os.environ, OPENAI_API_KEY="test-key", PYTHONPATH=str(ROOT))
    env.pop("OPENAI_BASE_URL", None)
    return subprocess.Popen([sys.executable, "-m", "data_gen", *args], cwd=ROOT, env=env, **kw)


def test_kill_9_and_resume(tmp_path):
    server = FakeOpenAI(latency=0.15, faults=Faults(ptruncate=0.2, seed=3)).start()
    try:
        seeds = write_seeds(tmp_path / "seeds.jsonl", 24)
        out = tmp_path / "out"
        args = [
            "synth",
            "--seeds",
            str(seeds),
            "--out",
            str(out),
            "--model",
            "m",
            "--base-url",
            server.base_url,
        ]
        args += ["--concurrency", "3"]
        question = {f"s{i}": f"Seed {i}: Jo has {i + 2} cats and buys 3 more." for i in range(24)}
        done_before: set[str] = set()
        for kill_after in (3, 9, None):  # kill -9 twice at different points, then finish
            restart = time.monotonic()
            if kill_after is None:
                proc = _cli(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                stdout, stderr = proc.communicate(timeout=120)
                assert proc.returncode == 0, stderr
                assert "synth: 24/24 seeds" in stdout
            else:
                proc = _cli(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                journal = out / "journal.jsonl"
                while time.monotonic() - restart < 60:
                    if journal.exists() and journal.read_text().count("\n") >= kill_after:
                        break
                    time.sleep(0.02)
                time.sleep(0.07)  # land somewhere inside the next requests and commits
                proc.send_signal(signal.SIGKILL)
                proc.wait()
            # This run never asked again for a seed that was done before it started.
            asked = {e["seed"] for e in chat_requests(server) if e["t"] > restart}
            assert not asked & {question[s] for s in done_before}
            with Store(out) as st:
                assert st.done >= done_before
                done_before = set(st.done)
            assert len(done_before) >= (kill_after or 24)
        problems = read_jsonl(out / "problems.jsonl")
        rejects = read_jsonl(out / "rejects.jsonl")
        assert len({p["id"] for p in problems}) == len(problems)  # nothing duplicated
        assert len({(p["seed_id"], p["question"]) for p in problems}) == len(problems)
        assert {p["seed_id"] for p in problems} == {f"s{i}" for i in range(24)}
        per_seed = Counter(p["seed_id"] for p in problems)
        cut = Counter(r["seed_id"] for r in rejects)
        assert all(n == (8 if sid in cut else 10) for sid, n in per_seed.items())
        assert all(v == 1 for v in cut.values())
        summary = json.loads((out / "summary.json").read_text())
        assert summary["seeds_done"] == 24 and summary["problems"] == len(problems)
    finally:
        server.stop()


def _one_line_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as e:
        run_main(synth.main, argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    lines = [x.strip() for x in err.replace("\r", "\n").splitlines() if x.strip()]
    assert "Traceback" not in err and [x for x in lines if x.startswith("error: ")] == lines[-1:], (
        err
    )
    return lines[-1]


def test_bad_input_one_clear_line(tmp_path, server, capsys, monkeypatch):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text('{"question": "Jo has 3 cats."}\n{"id": 7, "text": "no question here"}\n')
    base = ["--out", str(tmp_path / "out"), "--model", "m"]
    err = _one_line_error(["--seeds", str(seeds), *base, "--base-url", server.base_url], capsys)
    assert f"{seeds}:2: missing field 'question'" in err
    assert not (tmp_path / "out" / "problems.jsonl").exists()

    good = write_seeds(tmp_path / "good.jsonl", 2)
    monkeypatch.delenv("OPENAI_API_KEY")
    err = _one_line_error(["--seeds", str(good), *base], capsys)
    assert "OPENAI_API_KEY is not set" in err

    server.api_key = "the-right-key"
    monkeypatch.setenv("OPENAI_API_KEY", "a-wrong-key")
    err = _one_line_error(["--seeds", str(good), *base, "--base-url", server.base_url], capsys)
    assert "authentication failed" in err

    import socket

    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    err = _one_line_error(
        [
            "--seeds",
            str(good),
            *base,
            "--base-url",
            f"http://127.0.0.1:{port}/v1",
            "--backoff",
            "0.01",
        ],
        capsys,
    )
    assert "cannot reach the server" in err

    dup = tmp_path / "dup.jsonl"
    dup.write_text('{"id": "a", "question": "x"}\n{"id": "a", "question": "y"}\n')
    assert "appears twice" in _one_line_error(
        ["--seeds", str(dup), *base, "--base-url", server.base_url], capsys
    )


def test_cli_subprocess_error_has_no_traceback(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text("{not json}\n")
    p = _cli(
        ["synth", "--seeds", str(seeds), "--out", str(tmp_path / "o"), "--model", "m"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    _, err = p.communicate(timeout=60)
    assert p.returncode == 2
    assert (
        err.strip()
        == f"error: {seeds}:1: not valid JSON (Expecting property name enclosed in double quotes)"
    )


def test_local_server_needs_no_key(tmp_path, server, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY")
    seeds = write_seeds(tmp_path / "seeds.jsonl", 1)
    argv = ["--seeds", str(seeds), "--out", str(tmp_path / "o"), "--model", "m"]
    assert synth.main(argv + ["--base-url", server.base_url]) == 0
    assert len(read_jsonl(tmp_path / "o" / "problems.jsonl")) == 10
