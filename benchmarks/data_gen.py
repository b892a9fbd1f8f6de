"""data_gen throughput: teacher requests/min against the --rpm limit, and filter rows/s.

1. `synth` against the local OpenAI-compatible server (data_gen.fake_server on 127.0.0.1,
   with injected latency), the real openai client over real HTTP: requests/min achieved
   with `--rpm R` (ratio to R: the limiter should reach it and never pass it), and with no
   limit (what the client sustains at that latency and concurrency).
2. `filter` on the problems that run produced: rows/s through the sandbox, against a naive
   peer that runs each program in its own `python -c` subprocess.

    python -m benchmarks.data_gen [--seeds 120] [--rpm 1200] [--latency 0.2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.results import MachineGuard, add_guard_args
from data_gen import filter as dfilter
from data_gen import synth
from data_gen.fake_server import FakeOpenAI


def _rpm(server: FakeOpenAI) -> tuple[int, float]:
    t = sorted(e["t"] for e in server.log if e["path"] == "chat" and "fault" in e)
    return len(t), (len(t) - 1) / (t[-1] - t[0]) * 60 if len(t) > 1 else 0.0


def run_synth(
    tmp: Path, n: int, latency: float, concurrency: int, rpm: float | None
) -> tuple[int, float, float]:
    seeds = tmp / "seeds.jsonl"
    seeds.write_text(
        "".join(
            json.dumps({"question": f"Ann has {i} apples and buys 3 more."}) + "\n"
            for i in range(n)
        )
    )
    out = tmp / f"out-{rpm}"
    server = FakeOpenAI(latency=latency).start()
    try:
        argv = [
            "--seeds",
            str(seeds),
            "--out",
            str(out),
            "--model",
            "bench",
            "--base-url",
            server.base_url,
        ]
        argv += ["--concurrency", str(concurrency)] + (["--rpm", str(rpm)] if rpm else [])
        t = time.perf_counter()
        assert synth.main(argv) == 0
        wall = time.perf_counter() - t
    finally:
        server.stop()
    reqs, achieved = _rpm(server)
    return reqs, achieved, wall


def naive_rows_per_s(codes: list[str]) -> float:
    """Peer: one fresh `python -c` per program (no isolation beyond a process)."""
    t = time.perf_counter()
    for code in codes:
        subprocess.run(
            [sys.executable, "-c", code + "\nprint(simple_math_problem())"],
            capture_output=True,
            timeout=10,
        )
    return len(codes) / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m benchmarks.data_gen", description=__doc__.splitlines()[0]
    )
    p.add_argument("--seeds", type=int, default=120)
    p.add_argument("--rpm", type=float, default=1200.0)
    p.add_argument("--latency", type=float, default=0.2, help="server seconds per answer")
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--naive", type=int, default=100, help="programs run by the naive peer")
    p.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    add_guard_args(p)
    args = p.parse_args(argv)
    guard = MachineGuard("data_gen", force=args.force)
    guard.before()
    os.environ.setdefault("OPENAI_API_KEY", "bench")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        n_lim, rpm_lim, wall_lim = run_synth(
            tmp, args.seeds, args.latency, args.concurrency, args.rpm
        )
        n_free, rpm_free, wall_free = run_synth(
            tmp, args.seeds, args.latency, args.concurrency, None
        )
        problems = tmp / f"out-{args.rpm}" / "problems.jsonl"
        rows = problems.read_text().count("\n")
        t = time.perf_counter()
        assert (
            dfilter.main(
                ["--input", str(problems), "--out", str(tmp / "filtered"), "--timeout", "5"]
            )
            == 0
        )
        filter_wall = time.perf_counter() - t
        report = json.loads((tmp / "filtered" / "report.json").read_text())
        codes = [
            json.loads(line)["code"] for line in problems.read_text().splitlines()[: args.naive]
        ]
        naive = naive_rows_per_s(codes)
    filter_rps = rows / filter_wall
    guard.after()
    md = f"""## data_gen

{guard.describe()} Local OpenAI-compatible server on 127.0.0.1 with {args.latency * 1000:.0f} ms latency per
answer, real `openai` client over HTTP, {args.seeds} seeds, concurrency {args.concurrency}. Requests/min is
(requests - 1) / (last start - first start) as seen by the server; the limiter allows one request of
slack (the first two start together), so a short run can read a little above the limit.
The no-limit row is bound by this machine's CPU (client and server share it), not by the client's design.

| measure | value | peer | ratio |
| --- | --- | --- | --- |
| synth requests/min with `--rpm {args.rpm:.0f}` | {rpm_lim:.0f} ({n_lim} requests in {wall_lim:.1f} s) | the configured limit, {args.rpm:.0f} | {rpm_lim / args.rpm:.3f} |
| synth requests/min, no limit | {rpm_free:.0f} ({n_free} requests in {wall_free:.1f} s) | concurrency / latency = {args.concurrency / args.latency * 60:.0f} | {rpm_free / (args.concurrency / args.latency * 60):.2f} |
| filter rows/s (sandbox, {os.cpu_count()} workers, incl. start-up) | {filter_rps:.0f} ({rows} rows, kept {report["kept"]}) | one `python -c` per program: {naive:.1f} rows/s | {filter_rps / naive:.1f}x |
"""
    guard.publish(md, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
