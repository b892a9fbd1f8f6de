"""Sandbox throughput: programs/s through `Sandbox` vs one `python -c` subprocess per program.

Both run the same TinyGSM-style programs in the same run on the same machine. The sandbox figure
includes its start-up (zygotes, namespaces, probes) and shutdown. The peer is the naive
executor: a fresh interpreter per program (`subprocess.run([python, "-c", code])`), run one at a
time as the issue defines it, and also with as many in parallel as the sandbox has workers.

    python -m benchmarks.sandbox [--programs 3000] [--baseline 200] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from benchmarks.results import MachineGuard, add_guard_args
from tinygsm_jax.execute import DEFAULT_PRELOAD, Sandbox
from tinygsm_jax.solution_format import make_program


def programs(n: int, seed: int = 0) -> list[tuple[str, float]]:
    """`n` programs in the TinyGSM format with their expected answers."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        a, b, c = rng.randint(2, 90), rng.randint(2, 30), rng.randint(1, 9)
        q = f"Sam buys {a} boxes of {b} pencils and gives away {c} pencils. How many are left?"
        body = (
            f"    boxes = {a}\n    per_box = {b}\n    given_away = {c}\n"
            "    total = boxes * per_box\n    remaining = total - given_away\n"
            "    result = remaining\n    return result\n"
        )
        out.append((make_program(q, body), a * b - c))
    return out


def cpu_seconds() -> float:
    """CPU time of this process and of every child it has reaped (user + system)."""
    a, b = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return a.ru_utime + a.ru_stime + b.ru_utime + b.ru_stime


def run_python_c(code: str) -> str:
    script = code + "\nprint(simple_math_problem())\n"
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=30)
    return p.stdout.strip()


def run_sandbox(progs: list[tuple[str, float]], workers: int) -> tuple[float, float, float]:
    """(programs/s, CPU seconds per program, start-up seconds) through a fresh `Sandbox`."""
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    with Sandbox(workers=workers, timeout=5.0) as sb:
        t_started = time.perf_counter()
        res = sb.run([c for c, _ in progs])
    seconds = time.perf_counter() - t0
    cpu = (cpu_seconds() - c0) / len(progs)  # zygotes are reaped at close: all CPU counted
    assert all(r.status == "ok" and r.answer == a for r, (_, a) in zip(res, progs)), "wrong answers"
    return len(progs) / seconds, cpu, t_started - t0


def run_sequential_peer(base: list[tuple[str, float]]) -> tuple[float, float]:
    """(programs/s, CPU seconds per program) with one `python -c` per program, one at a time."""
    c0 = cpu_seconds()
    t0 = time.perf_counter()
    outs = [run_python_c(c) for c, _ in base]
    rate = len(base) / (time.perf_counter() - t0)
    assert outs == [str(a) for _, a in base], "baseline gave wrong answers"
    return rate, (cpu_seconds() - c0) / len(base)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=3000, help="programs through the sandbox")
    ap.add_argument("--baseline", type=int, default=200, help="programs through python -c")
    ap.add_argument("--workers", type=int, default=None, help="sandbox workers (default: CPUs)")
    ap.add_argument(
        "--repeats", type=int, default=3, help="alternating sandbox/peer rounds (medians kept)"
    )
    ap.add_argument("--no-write", action="store_true", help="do not update benchmarks/RESULTS.md")
    add_guard_args(ap)
    args = ap.parse_args(argv)
    guard = MachineGuard("sandbox", force=args.force)
    guard.before()
    workers = args.workers or os.cpu_count() or 1

    progs = programs(args.programs)
    base = progs[: args.baseline]
    # Sandbox and peer alternate, `repeats` times: the machine's drift then reaches both sides,
    # and the medians say more than any one pair.
    runs = []
    for _ in range(args.repeats):
        runs.append((*run_sandbox(progs, workers), *run_sequential_peer(base)))
    sb_rate, sb_cpu, startup_s, seq_rate, base_cpu = (
        statistics.median(r[i] for r in runs) for i in range(5)
    )

    # The same with numpy importable: a bigger zygote makes every fork dearer.
    np_progs = progs[: max(1, len(progs) // 3)]
    t0 = time.perf_counter()
    with Sandbox(workers=workers, timeout=5.0, preload=DEFAULT_PRELOAD + ("numpy",)) as sb:
        res = sb.run([c for c, _ in np_progs])
    np_rate = len(np_progs) / (time.perf_counter() - t0)
    assert all(r.answer == a for r, (_, a) in zip(res, np_progs)), "wrong answers"

    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as ex:
        outs = list(ex.map(run_python_c, [c for c, _ in base]))
    par_rate = len(base) / (time.perf_counter() - t0)
    assert outs == [str(a) for _, a in base], "baseline gave wrong answers"

    guard.after()
    table = (
        "## sandbox: programs/s vs one `python -c` subprocess per program\n\n"
        f"{guard.describe()} Python {sys.version.split()[0]}. {len(progs)} TinyGSM-style programs through "
        f"`Sandbox(workers={workers})`, start-up ({startup_s:.2f} s) and shutdown included; "
        f"{len(base)} through `python -c`, one at a time; the two alternate {len(runs)} times and "
        "the first and third rows are medians (the others are one run each). CPU ms/program counts "
        "every process involved (caller, zygotes, program processes; interpreter, for the peer). "
        "Speed-up of each round: "
        + ", ".join(f"{r[0] / r[3]:.1f}x ({r[0]:.0f} vs {r[3]:.1f}/s)" for r in runs)
        + ".\n\n"
        "| executor | programs/s | sandbox speed-up | CPU ms/program |\n|---|---:|---:|---:|\n"
        f"| `Sandbox` ({workers} zygotes, full isolation) | {sb_rate:.0f} | 1.0x | {sb_cpu * 1e3:.2f} |\n"
        f"| `Sandbox` with numpy preloaded ({len(np_progs)} programs) | {np_rate:.0f} | {sb_rate / np_rate:.1f}x slower | |\n"
        f"| `python -c` per program, one at a time | {seq_rate:.1f} | {sb_rate / seq_rate:.1f}x | {base_cpu * 1e3:.2f} |\n"
        f"| `python -c` per program, {workers} at a time | {par_rate:.1f} | {sb_rate / par_rate:.1f}x | |\n"
    )
    guard.publish(table, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
