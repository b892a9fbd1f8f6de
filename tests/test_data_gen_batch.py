"""`python -m data_gen batch prepare|submit|status|collect` against a local Batch API."""

import json
from collections import Counter
from pathlib import Path

import pytest

from data_gen import batch
from data_gen.fake_server import FakeOpenAI, Faults
from tinygsm_jax.cli import UserError
from tinygsm_jax.solution_format import split_program


def write_seeds(path: Path, n: int) -> Path:
    with path.open("w") as f:
        for i in range(n):
            f.write(
                json.dumps({"question": f"Seed {i}: Al has {i + 2} pens and buys 5 more."}) + "\n"
            )
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def server(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    s = FakeOpenAI().start()
    yield s
    s.stop()


def test_prepare_submit_collect_resume(tmp_path, server):
    server.faults = Faults(p500=0.4, seed=5, ptruncate=0.2)  # in a batch: failed lines, cut answers
    seeds = write_seeds(tmp_path / "seeds.jsonl", 7)
    out = tmp_path / "out"
    url = ["--out", str(out), "--base-url", server.base_url]
    prep = [
        "prepare",
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--model",
        "gpt-4o-mini",
        "--max-requests",
        "3",
    ]
    assert batch.main(prep) == 0
    state = json.loads((out / "batch" / "state.json").read_text())
    assert [f["requests"] for f in state["files"]] == [3, 3, 1]  # split at the per-file limit
    for f in state["files"]:
        for line in read_jsonl(out / "batch" / f["name"]):
            assert line["url"] == "/v1/chat/completions" and line["method"] == "POST"
            assert line["custom_id"].startswith("p:") and line["body"]["model"] == "gpt-4o-mini"
    assert batch.main(prep) == 0  # nothing new: every seed waits in a file
    assert len(json.loads((out / "batch" / "state.json").read_text())["files"]) == 3

    assert batch.main(["submit", *url]) == 0
    assert len(server._batches) == 3
    assert batch.main(["submit", *url]) == 0  # idempotent
    assert len(server._batches) == 3
    assert batch.main(["status", *url]) == 0
    assert batch.main(["collect", *url]) == 0
    first = read_jsonl(out / "problems.jsonl")
    failed = 7 - len({p["seed_id"] for p in first})
    assert failed > 0  # some lines failed; their seeds are still pending

    # Failed seeds are asked again by the next round; done ones never.
    assert batch.main(prep) == 0
    state = json.loads((out / "batch" / "state.json").read_text())
    retry_ids = {
        r["custom_id"] for f in state["files"][3:] for r in read_jsonl(out / "batch" / f["name"])
    }
    assert len(retry_ids) == failed and not retry_ids & {f"p:{p['seed_id']}" for p in first}
    assert batch.main(["submit", *url]) == 0
    assert batch.main(["status", *url]) == 0
    assert batch.main(["collect", *url]) == 0
    assert batch.main(["collect", *url]) == 0  # collecting again changes nothing

    problems = read_jsonl(out / "problems.jsonl")
    rejects = read_jsonl(out / "rejects.jsonl")
    assert {p["seed_id"] for p in problems} == {str(i) for i in range(7)}
    assert len({p["id"] for p in problems}) == len(problems)
    cut = Counter(r["seed_id"] for r in rejects)
    assert all(r["reason"] == "truncated" for r in rejects)
    assert Counter(p["seed_id"] for p in problems) == {
        str(i): 8 if str(i) in cut else 10 for i in range(7)
    }
    assert all(split_program(p["code"]) for p in problems)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["seeds_done"] == 7 and summary["requests"] == 7 and summary["api"] == "batch"
    full = (summary["tokens_in"] * 0.15 + summary["tokens_out"] * 0.60) / 1e6
    assert summary["cost_usd"] == pytest.approx(full / 2, rel=1e-3)  # Batch API: half price


def test_submit_after_crash_does_not_pay_twice(tmp_path, server):
    out = tmp_path / "out"
    seeds = write_seeds(tmp_path / "seeds.jsonl", 2)
    batch.main(["prepare", "--seeds", str(seeds), "--out", str(out), "--model", "m"])
    batch.main(["submit", "--out", str(out), "--base-url", server.base_url])
    # Simulate a crash between "create the batch" and "save the state".
    path = out / "batch" / "state.json"
    state = json.loads(path.read_text())
    state["files"][0].pop("batch_id")
    path.write_text(json.dumps(state))
    batch.main(["submit", "--out", str(out), "--base-url", server.base_url])
    assert len(server._batches) == 1
    assert json.loads(path.read_text())["files"][0]["batch_id"] == "batch_000000"


def test_two_step_rounds_and_byte_limit(tmp_path, server):
    out = tmp_path / "out"
    seeds = write_seeds(tmp_path / "seeds.jsonl", 4)
    prep = [
        "prepare",
        "--seeds",
        str(seeds),
        "--out",
        str(out),
        "--model",
        "m",
        "--prompt",
        "two-step",
        "--max-bytes",
        "9000",
    ]
    url = ["--out", str(out), "--base-url", server.base_url]
    for round_ in ("r:", "p:"):
        batch.main(prep)
        state = json.loads((out / "batch" / "state.json").read_text())
        new = [f for f in state["files"] if "batch_id" not in f]
        assert new and all(f["bytes"] <= 9000 for f in new)
        assert len(new) >= (2 if round_ == "p:" else 1)  # the solve requests need several files
        assert all(
            r["custom_id"].startswith(round_)
            for f in new
            for r in read_jsonl(out / "batch" / f["name"])
        )
        for cmd in ("submit", "status", "collect"):
            batch.main([cmd, *url])
    assert len(read_jsonl(out / "problems.jsonl")) == 40


def test_batch_errors(tmp_path, server):
    with pytest.raises(UserError, match="no batch state"):
        batch.main(["status", "--out", str(tmp_path / "nothing"), "--base-url", server.base_url])
    seeds = write_seeds(tmp_path / "seeds.jsonl", 1)
    with pytest.raises(UserError, match="max-requests"):
        batch.main(
            [
                "prepare",
                "--seeds",
                str(seeds),
                "--out",
                str(tmp_path / "o"),
                "--model",
                "m",
                "--max-requests",
                "50001",
            ]
        )
